//! Alerts: the record a SOC analyst reads, in the shape Calico uses for security events, plus the
//! detector's score, baseline and evidence; severity; the MITRE ATT&CK and SOC 2 mapping; and the
//! deterministic alert id.
//!
//! This module owns the alert model and its vocabulary. It must not decide *whether* something is
//! anomalous (detectors do) nor where alerts go (sinks do).

pub mod book;
pub mod mapping;

pub use book::{AlertBook, AlertsConfig};

use serde::{Deserialize, Serialize};

/// Calico's `type` for events flowwarden raises.
pub const ALERT_TYPE: &str = "flowwarden_anomaly";

/// Severity band of an alert (Calico keeps the 0-100 number; analysts read the band).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// 0-39.
    Low,
    /// 40-69.
    Medium,
    /// 70-89.
    High,
    /// 90-100.
    Critical,
}

impl Severity {
    /// Band of a 0-100 severity.
    pub fn from_score(severity: u8) -> Self {
        match severity {
            90..=u8::MAX => Severity::Critical,
            70..=89 => Severity::High,
            40..=69 => Severity::Medium,
            _ => Severity::Low,
        }
    }
    /// Parses `low|medium|high|critical` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
    /// Lowest 0-100 severity of the band.
    pub fn min_score(self) -> u8 {
        match self {
            Severity::Low => 0,
            Severity::Medium => 40,
            Severity::High => 70,
            Severity::Critical => 90,
        }
    }
}

/// The expected range the detector compared the observation with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Band {
    /// Lower edge.
    pub lower: f64,
    /// Upper edge (observations above it are anomalous).
    pub upper: f64,
}

/// One alert, one JSON line. Field names follow Calico's security events (`time`, `type`, `origin`,
/// `severity`, `source_*`, `dest_*`, `mitre_*`, `mitigations`, `record`), then flowwarden's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic id: hash of (detector, workload, window start); see [`alert_id`].
    pub id: String,
    /// Event time the alert refers to (end of the window, epoch s).
    pub time: i64,
    /// Calico event type ([`ALERT_TYPE`]).
    #[serde(rename = "type")]
    pub kind: String,
    /// The detector that raised it (Calico's `origin`).
    pub origin: String,
    /// 0-100.
    pub severity: u8,
    /// Band of `severity`.
    pub severity_label: Severity,
    /// One sentence for the analyst.
    pub description: String,
    /// Source IP when one address is involved.
    pub source_ip: Option<String>,
    /// Source port when one port is involved.
    pub source_port: Option<u16>,
    /// Source pod name (`-` when aggregated).
    pub source_name: String,
    /// Source workload (`frontend-7d9c8b6f4-*`, `pub`, ...).
    pub source_name_aggr: String,
    /// Source namespace (`-` when not namespaced).
    pub source_namespace: String,
    /// Destination IP when one address is involved.
    pub dest_ip: Option<String>,
    /// Destination port when one port is involved.
    pub dest_port: Option<u16>,
    /// Destination pod name (`-` when aggregated).
    pub dest_name: String,
    /// Destination workload.
    pub dest_name_aggr: String,
    /// Destination namespace.
    pub dest_namespace: String,
    /// Node or shipper host when known.
    pub host: Option<String>,
    /// Always `Network` for flow-log detections.
    pub attack_vector: String,
    /// MITRE ATT&CK tactic.
    pub mitre_tactic: String,
    /// MITRE ATT&CK technique ids.
    pub mitre_ids: Vec<String>,
    /// What to do about it.
    pub mitigations: Vec<String>,
    /// Evidence (top peers, ports, bytes; detector-specific).
    pub record: serde_json::Value,
    /// Calico's dismissed flag (always false when raised).
    pub dismissed: bool,
    /// Detector name (same as `origin`).
    pub detector: String,
    /// Canonical key of the workload the alert is about (the actor).
    pub workload: String,
    /// Labels of that workload (`k=v`), for responders building selectors.
    pub workload_labels: Vec<String>,
    /// Window start (epoch s).
    pub window_start: i64,
    /// Window end (epoch s).
    pub window_end: i64,
    /// Detector score (>= 0; higher is more anomalous).
    pub score: f64,
    /// Observed value of the measured feature.
    pub observed: f64,
    /// Expected value (baseline).
    pub expected: f64,
    /// Expected band.
    pub band: Band,
    /// Feature the detector measured (`bytes_out`, `distinct_dest_ports`, ...).
    pub feature: String,
    /// SOC 2 criteria this alert evidences.
    pub soc2: Vec<String>,
    /// An early alert raised on the open window by the fast path ([`crate::detect::fast_path`]);
    /// the window-close alert of the same detector, workload and window (another id) confirms it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
}

/// Deterministic alert id: xxh3-128 of (detector, workload key, window start), hex.
///
/// A restart that replays input re-emits the same ids, so downstream can de-duplicate.
pub fn alert_id(detector: &str, workload: &str, window_start: i64) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(detector.as_bytes());
    h.update(&[0]);
    h.update(workload.as_bytes());
    h.update(&[0]);
    h.update(&window_start.to_le_bytes());
    format!("{:032x}", h.digest128())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = alert_id("port_scan", "shop/cart-*", 300);
        assert_eq!(a, alert_id("port_scan", "shop/cart-*", 300));
        assert_ne!(a, alert_id("port_scan", "shop/cart-*", 600));
        assert_ne!(a, alert_id("ip_sweep", "shop/cart-*", 300));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn severity_bands() {
        assert_eq!(Severity::from_score(95), Severity::Critical);
        assert_eq!(Severity::from_score(70), Severity::High);
        assert_eq!(Severity::from_score(40), Severity::Medium);
        assert_eq!(Severity::from_score(39), Severity::Low);
        assert_eq!(Severity::parse("HIGH"), Some(Severity::High));
    }
}
