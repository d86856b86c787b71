//! Actuators: where quarantine actions take effect. One trait, real alternatives: a manifest directory
//! for GitOps ([`DirectoryActuator`]) and the Kubernetes API ([`KubeActuator`]); the Kafka actions topic
//! implements the same trait elsewhere.
//!
//! Contract for implementations: `apply` gets every record the responder emits, including skips and
//! dry-run records; it must not change the cluster unless [`ActionRecord::is_actionable`] is true, and
//! must be idempotent (the same record twice leaves the same result), because replays re-send records.

pub mod api_grants;
mod directory;
mod kube;

pub use self::directory::DirectoryActuator;
pub use self::kube::KubeActuator;

use super::config::{ActuatorKind, RespondConfig};
use super::record::ActionRecord;

/// Makes an action take effect. Blocking: implementations that do async I/O run it on their own runtime
/// thread, so callers inside tokio should call `apply` from `spawn_blocking` or a dedicated thread.
pub trait Actuator: Send {
    /// Short name for logs (`directory`, `kubernetes`, ...).
    fn name(&self) -> &'static str;
    /// Applies one record (see the module contract).
    fn apply(&mut self, action: &ActionRecord) -> anyhow::Result<()>;
}

/// The actuator `respond.actuator` asks for; `None` for `kind = "none"`.
pub fn build_actuator(cfg: &RespondConfig) -> anyhow::Result<Option<Box<dyn Actuator>>> {
    Ok(match cfg.actuator.kind {
        ActuatorKind::None => None,
        ActuatorKind::Directory => {
            let dir = cfg.actuator.directory.clone().ok_or_else(|| {
                anyhow::anyhow!("respond.actuator.directory is required for the directory actuator")
            })?;
            Some(Box::new(DirectoryActuator::new(dir)?))
        }
        ActuatorKind::Kubernetes => Some(Box::new(KubeActuator::new(&cfg.actuator)?)),
    })
}
