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

pub mod beaconing;
pub mod deny_surge;
pub mod edge_burst;
pub mod egress;
pub mod fast_path;
pub mod multivariate;
pub mod new_peer;
pub mod rarity;
pub mod scan;
pub mod slow_scan;
pub mod sweep;
pub mod volume;

use crate::alert::Band;
use crate::baseline::{Baseline, ClusterState};
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
    /// Cluster-wide state as of the previous window.
    pub cluster: &'a ClusterState,
    /// Windows of history a baseline needs before statistical detectors judge it.
    pub warmup_windows: u64,
    /// Mean feature vector (log1p) per namespace in this window, for peer-group comparison.
    pub namespace_profiles: &'a rustc_hash::FxHashMap<u64, multivariate::Profile>,
}

impl DetectContext<'_> {
    /// Whether a baseline has enough history for statistical judgement.
    pub fn is_warm(&self, b: Option<&Baseline>) -> bool {
        b.is_some_and(|b| b.windows_seen >= self.warmup_windows)
    }

    /// Whether a count-against-threshold ratio is too weak to report: under the threshold, and (in
    /// soft scoring for `--scores`) under a fifth of it too.
    pub fn below_report(&self, ratio: f64) -> bool {
        ratio < 1.0 && !(self.soft && ratio >= 0.2)
    }
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
    /// Scans and sweeps spread over many windows (long-horizon distinct counts).
    pub slow_scan: slow_scan::SlowScanConfig,
    /// Volume against the workload's history.
    pub volume: volume::VolumeConfig,
    /// New (peer, port) pairs: lateral movement.
    pub new_peer: new_peer::NewPeerConfig,
    /// Ports almost no workload uses.
    pub rarity: rarity::RarityConfig,
    /// Denied flows above history.
    pub deny_surge: deny_surge::DenySurgeConfig,
    /// New public destinations and exfiltration volume.
    pub egress: egress::EgressConfig,
    /// Periodic connections to a rarely shared external host.
    pub beaconing: beaconing::BeaconingConfig,
    /// MIDAS-R-style edge bursts.
    pub edge_burst: edge_burst::EdgeBurstConfig,
    /// Feature vector against history and namespace peers.
    pub multivariate: multivariate::MultivariateConfig,
    /// Early port-scan / IP-sweep alerts on open windows.
    pub fast_path: fast_path::FastPathConfig,
    /// Policy ledger: loosened and drifting policy decisions, staged-policy impact.
    pub policy_drift: crate::policy_insight::PolicyDriftConfig,
}

impl DetectConfig {
    /// Checks values; errors name the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.port_scan
            .validate()
            .map_err(|(k, m)| (format!("detect.port_scan.{k}"), m))?;
        self.ip_sweep
            .validate()
            .map_err(|(k, m)| (format!("detect.ip_sweep.{k}"), m))?;
        self.policy_drift
            .validate()
            .map_err(|(k, m)| (format!("detect.policy_drift.{k}"), m))?;
        self.slow_scan
            .validate()
            .map_err(|(k, m)| (format!("detect.slow_scan.{k}"), m))?;
        let positive = |name: &str, key: &str, v: f64| -> Result<(), (String, String)> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err((
                    format!("detect.{name}.{key}"),
                    "must be a positive number".into(),
                ))
            }
        };
        positive("volume", "z_threshold", self.volume.z_threshold)?;
        positive("volume", "min_ratio", self.volume.min_ratio)?;
        positive("new_peer", "threshold", self.new_peer.threshold)?;
        positive("deny_surge", "z_threshold", self.deny_surge.z_threshold)?;
        positive(
            "egress",
            "new_public_threshold",
            self.egress.new_public_threshold,
        )?;
        positive("egress", "exfil_ratio", self.egress.exfil_ratio)?;
        positive("beaconing", "threshold", self.beaconing.threshold)?;
        positive("edge_burst", "chi_threshold", self.edge_burst.chi_threshold)?;
        positive("multivariate", "threshold", self.multivariate.threshold)?;
        if !(0.0..1.0).contains(&self.edge_burst.decay) {
            return Err(("detect.edge_burst.decay".into(), "must be in [0, 1)".into()));
        }
        if self.beaconing.horizon_windows == 0 || self.beaconing.horizon_windows > 64 {
            return Err((
                "detect.beaconing.horizon_windows".into(),
                "must be 1-64".into(),
            ));
        }
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
    if cfg.slow_scan.enabled {
        v.push(Box::new(slow_scan::SlowScan));
    }
    if cfg.volume.enabled {
        v.push(Box::new(volume::Volume));
    }
    if cfg.new_peer.enabled {
        v.push(Box::new(new_peer::NewPeer));
    }
    if cfg.rarity.enabled {
        v.push(Box::new(rarity::Rarity));
    }
    if cfg.deny_surge.enabled {
        v.push(Box::new(deny_surge::DenySurge));
    }
    if cfg.egress.enabled {
        v.push(Box::new(egress::Egress));
    }
    if cfg.beaconing.enabled {
        v.push(Box::new(beaconing::Beaconing));
    }
    if cfg.edge_burst.enabled {
        v.push(Box::new(edge_burst::EdgeBurst));
    }
    if cfg.multivariate.enabled {
        v.push(Box::new(multivariate::Multivariate));
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

/// Thresholds of a distinct-count detector (port scan, IP sweep): on all destinations, on denied
/// ones, and relative to the workload's warm history (`max(relative_min, relative_factor × usual)`).
pub struct DistinctThresholds {
    /// Distinct destinations in one window.
    pub all: u64,
    /// Distinct denied destinations in one window.
    pub denied: u64,
    /// Floor of the history-relative threshold.
    pub relative_min: u64,
    /// Multiple of the usual count.
    pub relative_factor: f64,
}

/// The count that is furthest over its threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistinctVerdict {
    /// Observed / threshold (1.0 = alert).
    pub ratio: f64,
    /// The count judged.
    pub observed: f64,
    /// Its absolute threshold (for the band).
    pub threshold: u64,
    /// Whether the denied count decided.
    pub denied_only: bool,
}

/// Judges a distinct count of all destinations and of denied ones against `t`; `usual` is the
/// workload's warm mean of the all-destinations count (`None` before warm-up).
pub fn distinct_verdict(
    all: f64,
    denied: f64,
    usual: Option<f64>,
    t: &DistinctThresholds,
) -> DistinctVerdict {
    let relative = usual.map_or(0.0, |m| {
        all / (t.relative_min as f64).max(t.relative_factor * m)
    });
    let r_all = (all / t.all as f64).max(relative);
    let r_denied = denied / t.denied as f64;
    if r_denied >= r_all {
        DistinctVerdict {
            ratio: r_denied,
            observed: denied,
            threshold: t.denied,
            denied_only: true,
        }
    } else {
        DistinctVerdict {
            ratio: r_all,
            observed: all,
            threshold: t.all,
            denied_only: false,
        }
    }
}

/// Robust z-score of `x` against a baseline feature: the deviation floor is the larger of the
/// standard deviation, `rel_floor` times the mean, and `abs_floor`, so steady workloads do not page on
/// tiny wobbles.
pub fn robust_z(x: f64, mean: f64, sd: f64, rel_floor: f64, abs_floor: f64) -> f64 {
    let sd = sd.max(rel_floor * mean.abs()).max(abs_floor);
    (x - mean) / sd
}

/// Workload keys of some peers, for evidence.
pub fn peer_names(ids: &[WorkloadId]) -> Vec<String> {
    let reg = crate::flow::WorkloadRegistry::global();
    ids.iter().map(|id| reg.key(*id)).collect()
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
    peers.sort_by(|a, b| {
        key(b)
            .cmp(&key(a))
            .then(a.peer.cmp(&b.peer))
            .then(a.port.cmp(&b.port))
    });
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
