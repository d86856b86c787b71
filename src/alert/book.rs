//! [`AlertBook`]: turns findings into alerts, keeping one open alert per (detector, workload).
//!
//! A finding at or above the alert threshold opens an alert; while the same detector keeps firing on the
//! same workload within the suppression window the alert stays open and nothing new is emitted, unless
//! the severity rises. Decisions use event time only, so a replay gives the same alerts.

use crate::alert::mapping::mapping;
use crate::alert::{alert_id, Alert, Severity, ALERT_TYPE};
use crate::detect::Finding;
use crate::flow::{WorkloadId, WorkloadRegistry};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// `[alerts]` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Write alerts to stdout (JSON lines).
    pub stdout: bool,
    /// Also append alerts to this file.
    pub file: Option<std::path::PathBuf>,
    /// Alerts below this severity (0-100) are not emitted.
    pub min_severity: u8,
    /// How long an alert stays open without new findings (`1h`).
    pub suppression: String,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            stdout: true,
            file: None,
            min_severity: 0,
            suppression: "1h".into(),
        }
    }
}

impl AlertsConfig {
    /// Checks values; errors name the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.min_severity > 100 {
            return Err(("alerts.min_severity".into(), "must be 0-100".into()));
        }
        crate::window::parse_duration_s(&self.suppression)
            .map_err(|m| ("alerts.suppression".to_string(), m))?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct OpenAlert {
    last_seen: i64,
    severity: u8,
}

/// Open alerts and the suppression state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AlertBook {
    open: FxHashMap<(String, WorkloadId), OpenAlert>,
    suppression_s: i64,
    min_severity: u8,
}

impl AlertBook {
    /// A book with the configured suppression.
    pub fn new(cfg: &AlertsConfig) -> Self {
        AlertBook {
            open: FxHashMap::default(),
            suppression_s: crate::window::parse_duration_s(&cfg.suppression).unwrap_or(3600),
            min_severity: cfg.min_severity,
        }
    }

    /// Takes new thresholds, keeping open alerts.
    pub fn reconfigure(&mut self, cfg: &AlertsConfig) {
        self.suppression_s = crate::window::parse_duration_s(&cfg.suppression).unwrap_or(3600);
        self.min_severity = cfg.min_severity;
    }

    /// Estimated bytes held by the open alerts (for the state budget).
    pub fn estimated_bytes(&self) -> usize {
        self.open.capacity() * (std::mem::size_of::<((String, WorkloadId), OpenAlert)>() + 1 + 24)
    }

    /// How long an open alert suppresses its repeats, in seconds (`alerts.suppression`).
    pub fn suppression_s(&self) -> i64 {
        self.suppression_s
    }

    /// Alerts for the findings of one closed window (sorted by the caller).
    pub fn raise(
        &mut self,
        findings: &[Finding],
        window_start: i64,
        window_end: i64,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        for f in findings.iter().filter(|f| f.score >= 1.0) {
            if f.severity < self.min_severity {
                continue;
            }
            let key = (f.detector.to_string(), f.workload);
            let emit = match self.open.get(&key) {
                Some(o) if window_end - o.last_seen <= self.suppression_s => {
                    f.severity > o.severity
                }
                _ => true,
            };
            let entry = self.open.entry(key).or_insert(OpenAlert {
                last_seen: window_end,
                severity: f.severity,
            });
            entry.last_seen = window_end;
            if emit {
                entry.severity = f.severity;
                out.push(to_alert(f, window_start, window_end));
            }
        }
        // Forget alerts whose suppression window has passed, so memory stays bounded.
        let horizon = self.suppression_s;
        self.open.retain(|_, o| window_end - o.last_seen <= horizon);
        out
    }
}

/// Builds the analyst-facing alert from a finding.
pub fn to_alert(f: &Finding, window_start: i64, window_end: i64) -> Alert {
    let reg = WorkloadRegistry::global();
    let subject = reg.get(f.workload);
    let peer = f.peer.and_then(|p| reg.get(p));
    let key = subject
        .as_ref()
        .map(|s| s.key.clone())
        .unwrap_or_else(|| reg.key(f.workload));
    let m = mapping(f.detector);
    let (ns, name, labels) = match &subject {
        Some(s) => (s.namespace.clone(), s.name_aggr.clone(), s.labels.clone()),
        None => ("-".into(), key.clone(), Vec::new()),
    };
    let (peer_ns, peer_name, peer_ip) = match &peer {
        Some(p) => (
            p.namespace.clone(),
            p.name_aggr.clone(),
            p.key
                .split_once(':')
                .filter(|_| p.kind == crate::flow::EndpointType::Net)
                .map(|(_, ip)| ip.to_string()),
        ),
        None => ("-".into(), "-".into(), None),
    };
    let egress = f.scope.egress;
    let (src, dst) = if egress {
        ((ns, name, None), (peer_ns, peer_name, peer_ip))
    } else {
        ((peer_ns, peer_name, peer_ip), (ns, name, None))
    };
    Alert {
        id: alert_id(f.detector, &key, window_start),
        time: window_end,
        kind: ALERT_TYPE.into(),
        origin: f.detector.into(),
        severity: f.severity,
        severity_label: Severity::from_score(f.severity),
        description: format!("{}: {}", key, f.description),
        source_ip: src.2,
        source_port: None,
        source_name: "-".into(),
        source_name_aggr: src.1,
        source_namespace: src.0,
        dest_ip: dst.2,
        dest_port: f.dest_port,
        dest_name: "-".into(),
        dest_name_aggr: dst.1,
        dest_namespace: dst.0,
        host: None,
        attack_vector: "Network".into(),
        mitre_tactic: m.mitre_tactic.into(),
        mitre_ids: m.mitre_ids.iter().map(|s| s.to_string()).collect(),
        mitigations: m.mitigations.iter().map(|s| s.to_string()).collect(),
        record: f.evidence.clone(),
        dismissed: false,
        detector: f.detector.into(),
        workload: key,
        workload_labels: labels,
        window_start,
        window_end,
        score: round3(f.score),
        observed: round3(f.observed),
        expected: round3(f.expected),
        band: crate::alert::Band {
            lower: round3(f.band.lower),
            upper: round3(f.band.upper),
        },
        feature: f.feature.into(),
        soc2: m.soc2.iter().map(|s| s.to_string()).collect(),
        provisional: false,
    }
}

fn round3(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}
