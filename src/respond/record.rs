//! Action records: what the responder decided (quarantine, release, skip), the JSON that goes to the
//! action stream, the actuators and the audit log; and the active-quarantine record kept in state.
//!
//! Plain data; ids are deterministic so a replay produces the same ids.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::QuarantineMode;

/// The kind of action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Isolate a workload.
    Quarantine,
    /// Undo an isolation.
    Release,
    /// An alert that did not lead to an action; `rule` names why.
    Skip,
}

/// The audit vocabulary: a finer reading of [`ActionKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// First quarantine of a workload (or after its escalation was forgotten).
    Quarantined,
    /// Quarantine of a repeat offender, with a longer expiry.
    Escalated,
    /// No action; see `rule`.
    Skipped,
    /// Released by an operator.
    Released,
    /// Released because the expiry passed.
    Expired,
}

/// One decision. JSON line in the action stream and in the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Deterministic: hash of (action kind, workload, quarantine episode start) — for skips, of the alert.
    pub id: String,
    /// Event time of the decision (epoch s).
    pub time: i64,
    /// `quarantine`, `release` or `skip`.
    pub action: ActionKind,
    /// Audit reading of the decision.
    pub decision: Decision,
    /// `flowwarden` or the operator.
    pub actor: String,
    /// True when nothing is (or was) changed in the cluster.
    pub dry_run: bool,
    /// Canonical workload key.
    pub workload: String,
    /// Namespace (`-` when not a pod).
    pub namespace: String,
    /// Calico selector expression of the workload's pods (empty for skips before it is known).
    pub selector: String,
    /// The same selector as Kubernetes `matchLabels`.
    pub match_labels: BTreeMap<String, String>,
    /// Alerts behind the decision.
    pub alert_ids: Vec<String>,
    /// Detector of the triggering alert.
    pub detector: Option<String>,
    /// Severity of the triggering alert.
    pub severity: Option<u8>,
    /// Human-readable reason.
    pub reason: String,
    /// For skips: the guardrail rule that stopped the action (`protected_namespace`, `max_active`, ...).
    pub rule: Option<String>,
    /// When the quarantine ends (epoch s).
    pub expires_at: Option<i64>,
    /// Start of the quarantine episode this action belongs to (epoch s).
    pub episode_start: Option<i64>,
    /// 0 for a first offence, 1 for the second, ...
    pub escalation_level: u32,
    /// Enforcement mode.
    pub mode: QuarantineMode,
    /// Name of the policy object (policy modes), empty in label mode.
    pub object_name: String,
    /// Rendered manifest (YAML); for releases the object removed or the patch that reverts the label.
    pub manifest: String,
}

impl ActionRecord {
    /// Whether an actuator should change the cluster for this record.
    pub fn is_actionable(&self) -> bool {
        !self.dry_run && self.action != ActionKind::Skip
    }
}

/// A quarantine in force (or simulated, when `dry_run`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveQuarantine {
    /// Canonical workload key.
    pub workload: String,
    /// Namespace.
    pub namespace: String,
    /// Aggregated workload name.
    pub name_aggr: String,
    /// Calico selector expression.
    pub selector: String,
    /// Kubernetes matchLabels.
    pub match_labels: BTreeMap<String, String>,
    /// Episode start (epoch s, event time).
    pub started_at: i64,
    /// Expiry (epoch s, event time).
    pub expires_at: i64,
    /// Escalation level of this episode.
    pub escalation_level: u32,
    /// Alerts behind it (the first one triggered it).
    pub alert_ids: Vec<String>,
    /// Whether it was only simulated.
    pub dry_run: bool,
    /// Mode it was enforced with (a release must undo the same thing).
    pub mode: QuarantineMode,
    /// Policy object name (policy modes).
    pub object_name: String,
    /// Manifest that a release removes or reverts.
    pub release_manifest: String,
    /// Reason given when it started.
    pub reason: String,
}

/// Deterministic action id: xxh3-128 over the parts, hex.
pub fn action_id(kind: ActionKind, workload: &str, discriminator: &str) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let kind = match kind {
        ActionKind::Quarantine => "quarantine",
        ActionKind::Release => "release",
        ActionKind::Skip => "skip",
    };
    for part in [kind, workload, discriminator] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    format!("{:032x}", h.digest128())
}
