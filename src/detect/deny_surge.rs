//! Deny surge: denied flows from a workload far above its history. A workload probing what policy
//! blocks (recon, a compromised pod trying its luck) shows up here even when each probe is small.

use crate::alert::Band;
use crate::baseline::{Baseline, Feature};
use crate::detect::{
    robust_z, severity_for, top_peers_json, DetectContext, Detector, Finding, Scope,
};
use crate::flow::WorkloadId;
use crate::window::WindowAggregate;
use serde::{Deserialize, Serialize};

/// `[detect.deny_surge]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DenySurgeConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Robust z-score over history.
    pub z_threshold: f64,
    /// Minimum increase in denied flows per window.
    pub min_denied: u64,
    /// Windows of history needed (a deny surge in a workload's first windows is still suspicious, so
    /// this is lower than the general warm-up).
    pub min_history: u64,
}

impl Default for DenySurgeConfig {
    fn default() -> Self {
        DenySurgeConfig {
            enabled: true,
            z_threshold: 5.0,
            min_denied: 20,
            min_history: 3,
        }
    }
}

/// The deny-surge detector.
pub struct DenySurge;

impl Detector for DenySurge {
    fn name(&self) -> &'static str {
        "deny_surge"
    }

    fn evaluate(
        &self,
        ctx: &DetectContext<'_>,
        workload: WorkloadId,
        agg: &WindowAggregate,
        baseline: Option<&Baseline>,
        out: &mut Vec<Finding>,
    ) {
        let cfg = &ctx.cfg.deny_surge;
        if agg.denied_out == 0 {
            return;
        }
        let Some(b) = baseline.filter(|b| b.windows_seen >= cfg.min_history) else {
            return;
        };
        let x = agg.denied_out as f64;
        let mean = b.mean(Feature::DeniedOut);
        let sd = b.sd(Feature::DeniedOut);
        let z = robust_z(x, mean, sd, 0.2, 2.0);
        let score = (z / cfg.z_threshold).min((x - mean) / cfg.min_denied as f64);
        if score < 1.0 && !(ctx.soft && score > 0.2) {
            return;
        }
        out.push(Finding {
            detector: self.name(),
            workload,
            score: score.max(0.0),
            severity: severity_for(score, 60),
            feature: "denied_out",
            observed: x,
            expected: mean,
            band: Band {
                lower: 0.0,
                upper: mean + cfg.z_threshold * sd.max(0.2 * mean).max(2.0),
            },
            description: format!("{x:.0} denied flows against a usual {mean:.1}"),
            evidence: serde_json::json!({
                "denied_flows": agg.denied_out,
                "distinct_denied_dest_ports": agg.denied_ports.count(),
                "distinct_denied_dest_hosts": agg.denied_hosts.count(),
                "top_denied_peers": top_peers_json(agg, true, 10, |p| p.denied as u64),
            }),
            peer: None,
            dest_port: None,
            scope: Scope {
                egress: true,
                denied_only: true,
                ..Scope::default()
            },
        });
    }
}
