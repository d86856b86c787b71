//! flowwarden: streaming anomaly detection and quarantine for Calico flow logs.
//!
//! Data flow (see `ARCHITECTURE.md`): sources ([`source`]) → decode ([`flow`]) → aggregate per
//! event-time window and workload ([`window`]) → close windows → detectors ([`detect`]) against
//! baselines ([`baseline`]) → alerts ([`alert`]) → sinks ([`sink`]). [`pipeline`] wires the stages;
//! [`config`] holds every option.

pub mod alert;
pub mod baseline;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod eval;
pub mod flow;
pub mod kafka;
pub mod limits;
pub mod pipeline;
pub mod policy_insight;
pub mod report;
pub mod respond;
pub mod secret;
pub mod simulate;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod window;
