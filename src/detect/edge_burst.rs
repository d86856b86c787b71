//! Edge bursts, after MIDAS-R/MIDAS-F (Bhatia et al.): each (source group, destination group, port)
//! edge's count in this window is compared with its decayed mean in a count-min sketch using the
//! chi-squared statistic, and must also be several times that mean and above an absolute floor (real
//! traffic is far burstier than MIDAS's Poisson assumption, so chi-squared alone pages on every busy
//! edge). Windows judged anomalous are not merged into the totals (MIDAS-F's
//! conditional merge) so an ongoing attack keeps scoring as one, but every window raises the edge's
//! decayed peak, and a count must exceed that peak too: a burst the edge had yesterday (a nightly
//! job) does not page again tonight. The sketches live in
//! [`crate::baseline::ClusterState`].

use crate::alert::Band;
use crate::baseline::cluster::edge_key;
use crate::baseline::Baseline;
use crate::detect::{severity_for, DetectContext, Detector, Finding, Scope};
use crate::flow::{EndpointType, WorkloadId, WorkloadRegistry};
use crate::window::WindowAggregate;
use serde::{Deserialize, Serialize};

/// `[detect.edge_burst]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeBurstConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Chi-squared score that raises an alert.
    pub chi_threshold: f64,
    /// Minimum records + connections on the edge in the window.
    pub min_count: u64,
    /// The count must also be this many times the edge's decayed mean.
    pub min_ratio: f64,
    /// Per-window decay of the edge totals (MIDAS-R's alpha).
    pub decay: f64,
}

impl Default for EdgeBurstConfig {
    fn default() -> Self {
        EdgeBurstConfig {
            enabled: true,
            chi_threshold: 1000.0,
            min_count: 500,
            min_ratio: 5.0,
            decay: 0.9,
        }
    }
}

/// The edge-burst detector.
pub struct EdgeBurst;

impl Detector for EdgeBurst {
    fn name(&self) -> &'static str {
        "edge_burst"
    }

    fn evaluate(
        &self,
        ctx: &DetectContext<'_>,
        workload: WorkloadId,
        agg: &WindowAggregate,
        _baseline: Option<&Baseline>,
        out: &mut Vec<Finding>,
    ) {
        let cfg = &ctx.cfg.edge_burst;
        // An outside network is judged on the in-cluster side: a flood from `pub` is scored as the
        // victim's ingress edge (same sketch key as `pub`'s egress view), so the alert names the
        // workload someone can act on.
        if agg.outside {
            return;
        }
        let mut best: Option<(f64, f64, f64, &crate::window::aggregate::PeerStat)> = None;
        for p in agg
            .peers
            .iter()
            .filter(|p| p.egress || p.peer_kind == EndpointType::Net)
        {
            let a = (p.records as u64).max(p.connections) as f64;
            let key = if p.egress {
                edge_key(agg.group, p.peer_group, p.port)
            } else {
                edge_key(p.peer_group, agg.group, p.port)
            };
            let (chi, expected) = ctx.cluster.edge_score(key, a);
            // Also twice the edge's recent peak: a burst the edge already had (yesterday's nightly
            // job) is its normal, even if the decayed means have forgotten it.
            let peak = ctx.cluster.edge_peak(key);
            let score = (chi / cfg.chi_threshold)
                .min(a / cfg.min_count as f64)
                .min(a / (cfg.min_ratio * expected).max(2.0 * peak).max(1e-9));
            if best.is_none_or(|(s, ..)| score > s) {
                best = Some((score, a, expected, p));
            }
        }
        let Some((score, a, expected, p)) = best else {
            return;
        };
        if score < 1.0 && !(ctx.soft && score > 0.05) {
            return;
        }
        let peer = WorkloadRegistry::global().key(p.peer);
        out.push(Finding {
            detector: self.name(),
            workload,
            score,
            severity: severity_for(score, 55),
            feature: "edge_count",
            observed: a,
            expected,
            band: Band {
                lower: 0.0,
                upper: expected.max(1.0) * 4.0,
            },
            description: format!(
                "burst of {a:.0} flows {} {peer} port {} (expected {expected:.1})",
                if p.egress { "to" } else { "from" },
                p.port
            ),
            evidence: serde_json::json!({
                "direction": if p.egress { "egress" } else { "ingress" },
                "destination": peer,
                "port": p.port,
                "count": a,
                "expected": expected,
                "bytes_out": p.bytes_out,
            }),
            peer: Some(p.peer),
            dest_port: Some(p.port),
            scope: Scope {
                egress: p.egress,
                peers: vec![p.peer],
                ports: vec![p.port],
                denied_only: false,
            },
        });
    }
}
