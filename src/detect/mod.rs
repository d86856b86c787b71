//! Detectors: the [`Detector`] trait, the [`Finding`] every detector returns, and the suite built from
//! config. One file per detector.
//!
//! A detector reads one closed window's [`WindowAggregate`] for one workload, that workload's
//! [`Baseline`] (history before this window) and a cluster-wide view, and returns findings with a score,
//! the observed and expected values, and evidence. It must not update baselines (the pipeline does, after
//! scoring) nor format alerts (the alert module does).
//!
//! Scores share one scale so `--scores` can rank records across detectors: 0 is normal, 1.0 is the
//! detector's alert threshold, higher is stronger evidence.

pub mod scan;
pub mod sweep;

use crate::alert::Band;
use crate::baseline::Baseline;
use crate::flow::WorkloadId;
use crate::window::WindowAggregate;
use serde::{Deserialize, Serialize};

/// Which records a finding implicates (for per-record scores).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    /// True: records where the workload is the source; false: where it is the destination.
    pub egress: bool,
    /// Only records to/from these peers (empty: any).
    pub peers: Vec<WorkloadId>,
    /// Only records to these destination ports (empty: any).
    pub ports: Vec<u16>,
    /// Only denied records.
    pub denied_only: bool,
}

/// One detector's verdict on one workload in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Detector name.
    pub detector: &'static str,
    /// The workload the finding is about.
    pub workload: WorkloadId,
    /// Score (1.0 = alert threshold).
    pub score: f64,
    /// Severity 0-100 if this becomes an alert.
    pub severity: u8,
    /// Feature measured.
    pub feature: &'static str,
    /// Observed value.
    pub observed: f64,
    /// Expected value.
    pub expected: f64,
    /// Expected band.
    pub band: Band,
    /// One sentence for the analyst.
    pub description: String,
    /// Evidence object (peers, ports, bytes).
    pub evidence: serde_json::Value,
    /// The main peer, when one peer is involved.
    pub peer: Option<WorkloadId>,
    /// The main destination port, when one is involved.
    pub dest_port: Option<u16>,
    /// Records implicated.
    pub scope: Scope,
}

/// What a detector may read besides the workload's own data.
pub struct DetectContext<'a> {
    /// Window index.
    pub window: i64,
    /// Window start (epoch s).
    pub window_start: i64,
    /// Window end (epoch s).
    pub window_end: i64,
    /// Detector thresholds.
    pub cfg: &'a DetectConfig,
    /// Whether findings below the alert threshold are wanted (for `--scores`).
    pub soft: bool,
}

/// A detector.
pub trait Detector: Send + Sync {
    /// Name in alerts and config.
    fn name(&self) -> &'static str;
    /// Evaluates one workload's closed window.
    fn evaluate(
        &self,
        ctx: &DetectContext<'_>,
        workload: WorkloadId,
        agg: &WindowAggregate,
        baseline: Option<&Baseline>,
        out: &mut Vec<Finding>,
    );
}

/// `[detect]` configuration: one table per detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Port scan.
    pub port_scan: scan::PortScanConfig,
    /// IP sweep.
    pub ip_sweep: sweep::IpSweepConfig,
}

impl DetectConfig {
    /// Checks values; errors name the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.port_scan.validate().map_err(|(k, m)| (format!("detect.port_scan.{k}"), m))?;
        self.ip_sweep.validate().map_err(|(k, m)| (format!("detect.ip_sweep.{k}"), m))?;
        Ok(())
    }
}

/// The detectors enabled by config, in a fixed order.
pub fn build_suite(cfg: &DetectConfig) -> Vec<Box<dyn Detector>> {
    let mut v: Vec<Box<dyn Detector>> = Vec::new();
    if cfg.port_scan.enabled {
        v.push(Box::new(scan::PortScan));
    }
    if cfg.ip_sweep.enabled {
        v.push(Box::new(sweep::IpSweep));
    }
    v
}

/// Maps a ratio `observed / threshold` to a 0-100 severity: 1x → `base`, 4x and more → 100.
pub fn severity_for(ratio: f64, base: u8) -> u8 {
    if !ratio.is_finite() || ratio <= 0.0 {
        return 0;
    }
    let extra = (ratio.log2() / 2.0).clamp(0.0, 1.0) * (100 - base) as f64;
    (base as f64 + extra).round().clamp(0.0, 100.0) as u8
}

/// Top peers by a key, for evidence.
pub fn top_peers_json(
    agg: &WindowAggregate,
    egress: bool,
    n: usize,
    key: impl Fn(&crate::window::aggregate::PeerStat) -> u64,
) -> serde_json::Value {
    let reg = crate::flow::WorkloadRegistry::global();
    let mut peers: Vec<_> = agg.peers.iter().filter(|p| p.egress == egress).collect();
    peers.sort_by(|a, b| key(b).cmp(&key(a)).then(a.peer.cmp(&b.peer)).then(a.port.cmp(&b.port)));
    serde_json::Value::Array(
        peers
            .into_iter()
            .take(n)
            .map(|p| {
                serde_json::json!({
                    "peer": reg.key(p.peer),
                    "port": p.port,
                    "proto": crate::flow::Proto(p.proto).name(),
                    "records": p.records,
                    "connections": p.connections,
                    "bytes_out": p.bytes_out,
                    "bytes_in": p.bytes_in,
                    "denied": p.denied,
                })
            })
            .collect(),
    )
}
