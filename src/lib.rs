//! flowwarden: streaming anomaly detection and quarantine for Calico flow logs.
//!
//! Data flow (see `ARCHITECTURE.md`): sources → decode ([`flow`]) → aggregate per event-time window and
//! workload ([`window`]) → close windows → detectors ([`detect`]) against baselines ([`baseline`]) →
//! alerts ([`alert`]) → sinks ([`sink`]) → responder ([`respond`]).

pub mod flow;
pub mod simulate;
