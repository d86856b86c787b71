//! Beaconing: a workload contacting one external destination in window after window with small,
//! steady sizes — the signature of command and control. Told apart from the cluster's ordinary periodic
//! traffic (NTP, DNS, health checks, a shared SaaS API) by how many workload groups share the
//! destination and the port.
//!
//! At flow-log resolution (windows of 15 s to 5 min) a beacon shows up as *persistence*: the edge is
//! present in a large share of recent windows. Exact inter-arrival periodicity is not measurable at
//! that resolution, so the score is the edge's duty cycle (active windows over the windows since its
//! oldest activity within the last `horizon_windows`), times a destination rarity weight, a port
//! rarity weight and a size-regularity weight.

use crate::alert::Band;
use crate::baseline::Baseline;
use crate::detect::{severity_for, DetectContext, Detector, Finding, Scope};
use crate::flow::{Proto, WorkloadId, WorkloadRegistry};
use crate::window::WindowAggregate;
use serde::{Deserialize, Serialize};

/// `[detect.beaconing]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BeaconingConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Windows over which the duty cycle is measured (at most 64).
    pub horizon_windows: u32,
    /// Active windows needed before an edge is judged.
    pub min_active_windows: u32,
    /// Combined score (duty × destination rarity × port weight × regularity × novelty) that raises
    /// an alert.
    pub threshold: f64,
    /// Novelty weight of an edge the workload already had during its warm-up: a service's own
    /// long-standing external API looks like a beacon too, a C2 channel usually appears later.
    pub established_weight: f64,
}

impl Default for BeaconingConfig {
    fn default() -> Self {
        BeaconingConfig {
            enabled: true,
            horizon_windows: 40,
            min_active_windows: 6,
            threshold: 0.3,
            established_weight: 0.3,
        }
    }
}

/// The beaconing detector.
pub struct Beaconing;

impl Detector for Beaconing {
    fn name(&self) -> &'static str {
        "beaconing"
    }

    fn evaluate(
        &self,
        ctx: &DetectContext<'_>,
        workload: WorkloadId,
        agg: &WindowAggregate,
        baseline: Option<&Baseline>,
        out: &mut Vec<Finding>,
    ) {
        let cfg = &ctx.cfg.beaconing;
        let Some(b) = baseline else {
            return;
        };
        let horizon = cfg.horizon_windows.clamp(1, 64);
        let horizon_mask = if horizon == 64 {
            u64::MAX
        } else {
            (1u64 << horizon) - 1
        };
        let mut best: Option<(f64, Finding)> = None;
        for p in agg.peers.iter().filter(|p| {
            p.egress
                && p.peer_kind == crate::flow::EndpointType::Net
                && p.peer_public
                && p.denied < p.records
        }) {
            let Some(e) = b.edge(p.peer_group, p.port, p.proto) else {
                continue;
            };
            // The edge is active now; the baseline holds the windows before this one.
            let mask = (e.mask_at(ctx.window) | 1) & horizon_mask;
            let active = mask.count_ones();
            if active < cfg.min_active_windows {
                continue;
            }
            // Duty cycle over the edge's life within the horizon (from its oldest active window), so
            // a beacon that started `min_active_windows` ago and never missed a window counts as
            // fully persistent instead of waiting for the whole horizon to fill.
            let span = (64 - mask.leading_zeros())
                .max(cfg.min_active_windows)
                .max(1);
            let duty = active as f64 / span as f64;
            let dest_weight = 1.0 / (1.0 + ctx.cluster.dest_others(p.peer_group, agg.group) as f64);
            let port_weight =
                0.5 + 0.5 / (1.0 + ctx.cluster.port_others(p.port, p.proto, agg.group) as f64);
            let mean = e.bytes.mean as f64;
            let cv = if mean > 0.0 { e.bytes.sd() / mean } else { 0.0 };
            let regularity = 1.0 / (1.0 + cv);
            // An edge that was active before, then silent for a while, and is back (a nightly
            // backup's upload) recurs; a beacon is present in every window since it appeared.
            let recurring = span < horizon && ctx.window - e.first_window + 1 > span as i64;
            let novelty = if e.new_after_warmup && !recurring {
                1.0
            } else {
                cfg.established_weight
            };
            let raw = duty * dest_weight * port_weight * regularity * novelty;
            let score = raw / cfg.threshold;
            if score < 1.0 && !ctx.soft {
                continue;
            }
            let peer_key = WorkloadRegistry::global().key(p.peer);
            let f = Finding {
                detector: self.name(),
                workload,
                score,
                severity: severity_for(score, 65),
                feature: "edge_duty_cycle",
                observed: duty,
                expected: 0.0,
                band: Band {
                    lower: 0.0,
                    upper: cfg.threshold,
                },
                description: format!(
                    "connects to {} port {}/{} in {} of the last {} windows with steady sizes (~{:.0} bytes)",
                    peer_key,
                    p.port,
                    Proto(p.proto).name(),
                    active,
                    horizon,
                    mean
                ),
                evidence: serde_json::json!({
                    "destination": peer_key,
                    "port": p.port,
                    "proto": Proto(p.proto).name(),
                    "active_windows": active,
                    "horizon_windows": horizon,
                    "duty_cycle": duty,
                    "other_workloads_using_destination": ctx.cluster.dest_others(p.peer_group, agg.group),
                    "mean_bytes_per_window": mean,
                    "bytes_cv": cv,
                    "appeared_after_warmup": e.new_after_warmup,
                }),
                peer: Some(p.peer),
                dest_port: Some(p.port),
                scope: Scope {
                    egress: true,
                    peers: vec![p.peer],
                    ports: vec![p.port],
                    denied_only: false,
                },
            };
            if ctx.soft {
                out.push(f);
            } else if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, f));
            }
        }
        if let Some((_, f)) = best {
            out.push(f);
        }
    }
}
