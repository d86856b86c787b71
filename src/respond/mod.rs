//! The quarantine responder: alerts in, quarantine actions out, under guardrails.
//!
//! Decide ([`Responder`]: detectors and minimum severity, include/exclude namespaces and labels,
//! protected namespaces, concurrent and hourly caps, per-workload cool-down, dry-run by default), render
//! (a `quarantine=true` label patch for the tier's GlobalNetworkPolicy, a per-workload Calico
//! NetworkPolicy whose selector must match no other known workload, or a weaker Kubernetes NetworkPolicy),
//! actuate ([`Actuator`]: manifest directory, Kubernetes API; Kafka elsewhere), expire with an escalating
//! ladder, release, audit every decision and persist state across restarts.
//!
//! Event time only: callers pass `now` (epoch s). This module must not read flow records or score
//! anything; it acts on [`crate::alert::Alert`]s.

pub mod actuator;
mod audit;
pub mod cli;
pub mod config;
pub mod record;
pub mod render;
mod responder;
pub mod selector;
pub mod stage;
mod state;

pub use actuator::{build_actuator, Actuator, DirectoryActuator, KubeActuator};
pub use cli::{run_policy, run_quarantine, PolicyCommand, QuarantineCommand, ResponderCommand};
pub use config::{
    ActuatorConfig, ActuatorKind, ConfigError, QuarantineMode, RespondConfig, TierConfig,
};
pub use record::{ActionKind, ActionRecord, ActiveQuarantine, Decision};
pub use render::render_install;
pub use responder::{rules, Responder, SELF_ACTOR};
pub use stage::ResponseStage;
pub use state::STATE_FILE;
