//! The responder's typed configuration (`[respond]`): guardrails, rendering and actuator choice, with
//! defaults that are safe out of the box (dry-run on, system namespaces protected) and a `validate` that
//! names the offending key.
//!
//! This file owns parsing and checking configuration only; it must not make decisions.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A configuration value the responder cannot work with; `key` is the full dotted key
/// (e.g. `respond.min_severity`) so the operator knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {key}: {message}")]
pub struct ConfigError {
    /// Dotted config key, starting with `respond.`.
    pub key: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl ConfigError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: format!("respond.{key}"),
            message: message.into(),
        }
    }
}

/// How a quarantine is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum QuarantineMode {
    /// Label the workload's pods `quarantine=true`; the tier's GlobalNetworkPolicy (from
    /// `flowwarden policy install`) isolates them. Pods created after the label patch are not labelled.
    #[default]
    Label,
    /// A per-workload Calico `NetworkPolicy` in the quarantine tier, selecting the workload's own labels.
    Policy,
    /// A Kubernetes `networking.k8s.io/v1` NetworkPolicy. Weaker: Kubernetes policies are allow-only and
    /// additive, so this deny-all does not override another policy that allows the pod.
    K8s,
}

/// The Calico tier that holds quarantine policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierConfig {
    /// Tier name; policy names in the tier are prefixed with it (`<tier>.<name>`).
    pub name: String,
    /// Tier order: lower is evaluated first. Must be below `default` (1,000,000); Calico's own
    /// `calico-system` tier is 100, so 150 runs right after it.
    pub order: f64,
}

impl Default for TierConfig {
    fn default() -> Self {
        Self {
            name: "flowwarden-quarantine".into(),
            order: 150.0,
        }
    }
}

/// Where actions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ActuatorKind {
    /// Actions are only recorded (audit, action stream).
    #[default]
    None,
    /// One YAML manifest per active quarantine in `directory` (for GitOps).
    Directory,
    /// The Kubernetes API (server-side apply, label patches).
    Kubernetes,
}

/// Actuator settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActuatorConfig {
    /// Which actuator.
    pub kind: ActuatorKind,
    /// Manifest directory (required for `directory`).
    pub directory: Option<PathBuf>,
    /// Server-side apply field manager (Kubernetes actuator).
    pub field_manager: String,
    /// API server URL (e.g. `http://127.0.0.1:8001` behind `kubectl proxy`); default: in-cluster config,
    /// then the kubeconfig.
    pub api_url: Option<String>,
}

impl Default for ActuatorConfig {
    fn default() -> Self {
        Self {
            kind: ActuatorKind::None,
            directory: None,
            field_manager: "flowwarden".into(),
            api_url: None,
        }
    }
}

/// `[respond]`: when and how flowwarden quarantines a workload.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RespondConfig {
    /// Turn the responder on (decisions are still dry-run unless `dry_run = false`).
    pub enabled: bool,
    /// Decide and audit, but change nothing in the cluster.
    pub dry_run: bool,
    /// Enforcement: `label`, `policy` or `k8s`.
    pub mode: QuarantineMode,
    /// Detectors whose alerts may quarantine.
    pub detectors: Vec<String>,
    /// Minimum alert severity (0-100) that may quarantine.
    pub min_severity: u8,
    /// Only these namespaces (globs) may be quarantined; empty = all.
    pub include_namespaces: Vec<String>,
    /// Never quarantine in these namespaces (globs).
    pub exclude_namespaces: Vec<String>,
    /// Only workloads matching at least one of these selectors (`k=v`, `k!=v`, `k`) may be quarantined;
    /// empty = all.
    pub include_labels: Vec<String>,
    /// Never quarantine workloads matching any of these selectors.
    pub exclude_labels: Vec<String>,
    /// Namespaces (globs) that are never touched, whatever the other rules say.
    pub protected_namespaces: Vec<String>,
    /// flowwarden's own namespace (always protected).
    pub own_namespace: String,
    /// Maximum concurrent quarantines.
    pub max_active: usize,
    /// Maximum new quarantines per hour of event time.
    pub max_per_hour: usize,
    /// After a workload is released, no new quarantine of it for this long (humantime, e.g. `30m`).
    pub cooldown: String,
    /// Quarantine length for the 1st, 2nd, ... episode of a workload; the last step repeats.
    pub expiry_ladder: Vec<String>,
    /// A workload's escalation is forgotten after this long without a quarantine.
    pub escalation_reset: String,
    /// The quarantine tier.
    pub tier: TierConfig,
    /// Keep DNS to kube-dns open for quarantined pods.
    pub allow_dns: bool,
    /// A namespace allowed to reach quarantined pods (forensics tooling).
    pub forensics_namespace: Option<String>,
    /// Actuator settings.
    pub actuator: ActuatorConfig,
    /// Where active quarantines and acted-on alert ids are kept across restarts.
    pub state_dir: Option<PathBuf>,
    /// Audit log (JSON lines); default `<state_dir>/audit.jsonl` when `state_dir` is set.
    pub audit_file: Option<PathBuf>,
}

impl Default for RespondConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dry_run: true,
            mode: QuarantineMode::Label,
            detectors: [
                "port_scan",
                "ip_sweep",
                "beaconing",
                "egress",
                "deny_surge",
                "new_peer",
            ]
            .map(String::from)
            .to_vec(),
            min_severity: 70,
            include_namespaces: Vec::new(),
            exclude_namespaces: Vec::new(),
            include_labels: Vec::new(),
            exclude_labels: Vec::new(),
            protected_namespaces: [
                "kube-system",
                "calico-system",
                "calico-apiserver",
                "tigera-*",
            ]
            .map(String::from)
            .to_vec(),
            own_namespace: "flowwarden".into(),
            max_active: 10,
            max_per_hour: 5,
            cooldown: "30m".into(),
            expiry_ladder: ["10m", "1h", "24h", "7d"].map(String::from).to_vec(),
            escalation_reset: "30d".into(),
            tier: TierConfig::default(),
            allow_dns: true,
            forensics_namespace: None,
            actuator: ActuatorConfig::default(),
            state_dir: None,
            audit_file: None,
        }
    }
}

/// Largest tier order that still runs before Calico's `default` tier.
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;

impl RespondConfig {
    /// Checks every key; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.min_severity > 100 {
            return Err(ConfigError::new(
                "min_severity",
                format!("{} is above 100", self.min_severity),
            ));
        }
        if self.detectors.iter().any(|d| d.trim().is_empty()) {
            return Err(ConfigError::new(
                "detectors",
                "detector names must not be empty",
            ));
        }
        for (key, patterns) in [
            ("include_namespaces", &self.include_namespaces),
            ("exclude_namespaces", &self.exclude_namespaces),
            ("protected_namespaces", &self.protected_namespaces),
        ] {
            for p in patterns {
                if p.is_empty() {
                    return Err(ConfigError::new(key, "empty namespace pattern"));
                }
                glob::Pattern::new(p)
                    .map_err(|e| ConfigError::new(key, format!("bad glob {p:?}: {e}")))?;
            }
        }
        for (key, selectors) in [
            ("include_labels", &self.include_labels),
            ("exclude_labels", &self.exclude_labels),
        ] {
            for s in selectors {
                super::selector::LabelRequirement::parse(s)
                    .map_err(|e| ConfigError::new(key, e))?;
            }
        }
        if !is_dns_label(&self.own_namespace) {
            return Err(ConfigError::new(
                "own_namespace",
                format!("{:?} is not a namespace name", self.own_namespace),
            ));
        }
        if self.max_active == 0 {
            return Err(ConfigError::new(
                "max_active",
                "must be at least 1 (set enabled = false to turn the responder off)",
            ));
        }
        if self.max_per_hour == 0 {
            return Err(ConfigError::new(
                "max_per_hour",
                "must be at least 1 (set enabled = false to turn the responder off)",
            ));
        }
        parse_duration("cooldown", &self.cooldown)?;
        parse_duration("escalation_reset", &self.escalation_reset)?;
        let ladder = self.ladder()?;
        if ladder.windows(2).any(|w| w[1] < w[0]) {
            return Err(ConfigError::new(
                "expiry_ladder",
                "steps must not get shorter",
            ));
        }
        if !is_dns_label(&self.tier.name) || self.tier.name == "default" {
            return Err(ConfigError::new(
                "tier.name",
                format!(
                    "{:?} must be a lowercase DNS label other than \"default\"",
                    self.tier.name
                ),
            ));
        }
        if !(self.tier.order.is_finite()
            && self.tier.order > 0.0
            && self.tier.order < DEFAULT_TIER_ORDER)
        {
            return Err(ConfigError::new(
                "tier.order",
                format!(
                    "{} must be between 0 and 1000000 (before the default tier)",
                    self.tier.order
                ),
            ));
        }
        if let Some(ns) = &self.forensics_namespace {
            if !is_dns_label(ns) {
                return Err(ConfigError::new(
                    "forensics_namespace",
                    format!("{ns:?} is not a namespace name"),
                ));
            }
        }
        if self.actuator.field_manager.trim().is_empty() {
            return Err(ConfigError::new(
                "actuator.field_manager",
                "must not be empty",
            ));
        }
        if self.actuator.kind == ActuatorKind::Directory && self.actuator.directory.is_none() {
            return Err(ConfigError::new(
                "actuator.directory",
                "required when actuator.kind = \"directory\"",
            ));
        }
        if let Some(url) = &self.actuator.api_url {
            url.parse::<http::Uri>()
                .map_err(|e| ConfigError::new("actuator.api_url", format!("{url:?}: {e}")))?;
        }
        Ok(())
    }

    /// Cool-down in seconds.
    pub(crate) fn cooldown_secs(&self) -> Result<i64, ConfigError> {
        parse_duration("cooldown", &self.cooldown).map(secs)
    }

    /// Escalation memory in seconds.
    pub(crate) fn escalation_reset_secs(&self) -> Result<i64, ConfigError> {
        parse_duration("escalation_reset", &self.escalation_reset).map(secs)
    }

    /// Expiry ladder in seconds.
    pub(crate) fn ladder(&self) -> Result<Vec<i64>, ConfigError> {
        if self.expiry_ladder.is_empty() {
            return Err(ConfigError::new(
                "expiry_ladder",
                "needs at least one duration",
            ));
        }
        self.expiry_ladder
            .iter()
            .map(|s| {
                let d = parse_duration("expiry_ladder", s)?;
                if d.is_zero() {
                    return Err(ConfigError::new(
                        "expiry_ladder",
                        "durations must be positive",
                    ));
                }
                Ok(secs(d))
            })
            .collect()
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn parse_duration(key: &str, s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s)
        .map_err(|e| ConfigError::new(key, format!("{s:?} is not a duration like \"30m\": {e}")))
}

/// RFC 1123 label: what Kubernetes accepts for namespace and tier names.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_safe() {
        let c = RespondConfig::default();
        c.validate().unwrap();
        assert!(c.dry_run);
        assert_eq!(c.ladder().unwrap(), vec![600, 3600, 86_400, 604_800]);
        assert!(c.protected_namespaces.iter().any(|p| p == "tigera-*"));
    }

    #[test]
    fn errors_name_the_key() {
        let bad = |f: &dyn Fn(&mut RespondConfig)| {
            let mut c = RespondConfig::default();
            f(&mut c);
            c.validate().unwrap_err().key
        };
        assert_eq!(bad(&|c| c.min_severity = 101), "respond.min_severity");
        assert_eq!(bad(&|c| c.cooldown = "soon".into()), "respond.cooldown");
        assert_eq!(bad(&|c| c.expiry_ladder = vec![]), "respond.expiry_ladder");
        assert_eq!(
            bad(&|c| c.expiry_ladder = vec!["1h".into(), "10m".into()]),
            "respond.expiry_ladder"
        );
        assert_eq!(bad(&|c| c.tier.order = 2_000_000.0), "respond.tier.order");
        assert_eq!(
            bad(&|c| c.tier.name = "Bad_Tier".into()),
            "respond.tier.name"
        );
        assert_eq!(
            bad(&|c| c.include_labels = vec!["=x".into()]),
            "respond.include_labels"
        );
        assert_eq!(
            bad(&|c| c.protected_namespaces = vec!["[".into()]),
            "respond.protected_namespaces"
        );
        assert_eq!(
            bad(&|c| c.actuator.kind = ActuatorKind::Directory),
            "respond.actuator.directory"
        );
        assert_eq!(bad(&|c| c.max_active = 0), "respond.max_active");
    }

    #[test]
    fn toml_round_trip_rejects_unknown_keys() {
        let c: RespondConfig =
            toml::from_str("dry_run = false\nmode = \"policy\"\n[tier]\norder = 120\n").unwrap();
        assert!(!c.dry_run);
        assert_eq!(c.mode, QuarantineMode::Policy);
        assert_eq!(c.tier.order, 120.0);
        assert!(toml::from_str::<RespondConfig>("dryrun = true").is_err());
    }
}
