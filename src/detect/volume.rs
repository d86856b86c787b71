//! Volume: bytes, packets or connections far above the workload's own history (decayed mean and
//! variance), in both directions. Three conditions must hold together so a tiny or a noisy workload
//! does not page anyone: a robust z-score over `z_threshold`, a ratio to the mean over `min_ratio`, and
//! an absolute increase over the feature's minimum. No verdict before the baseline is warm. "History"
//! includes the workload's usual peak at this hour of day (`Baseline::usual`), so a nightly backup
//! pages once, not every night.

use crate::alert::Band;
use crate::baseline::{Baseline, Feature};
use crate::detect::{
    robust_z, severity_for, top_peers_json, DetectContext, Detector, Finding, Scope,
};
use crate::flow::WorkloadId;
use crate::window::WindowAggregate;
use serde::{Deserialize, Serialize};

/// `[detect.volume]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VolumeConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Robust z-score that counts as far above history.
    pub z_threshold: f64,
    /// Observed / mean ratio that must also be exceeded.
    pub min_ratio: f64,
    /// Minimum increase in bytes (bytes_out, bytes_in).
    pub min_bytes: u64,
    /// Minimum increase in packets.
    pub min_packets: u64,
    /// Minimum increase in connections.
    pub min_connections: u64,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        VolumeConfig {
            enabled: true,
            z_threshold: 6.0,
            // Per-window transfer sizes are heavy-tailed (a 50x report download now and then):
            // 8x the usual and 100 MB more keep those quiet while an exfiltration or a flood is
            // still orders of magnitude above.
            min_ratio: 8.0,
            min_bytes: 100_000_000,
            min_packets: 50_000,
            min_connections: 1_000,
        }
    }
}

/// The volume detector.
pub struct Volume;

const FEATURES: [Feature; 5] = [
    Feature::BytesOut,
    Feature::BytesIn,
    Feature::PacketsIn,
    Feature::ConnsOut,
    Feature::ConnsIn,
];

impl Detector for Volume {
    fn name(&self) -> &'static str {
        "volume"
    }

    fn evaluate(
        &self,
        ctx: &DetectContext<'_>,
        workload: WorkloadId,
        agg: &WindowAggregate,
        baseline: Option<&Baseline>,
        out: &mut Vec<Finding>,
    ) {
        let cfg = &ctx.cfg.volume;
        let Some(b) = baseline.filter(|b| ctx.is_warm(Some(b))) else {
            return;
        };
        // An outside network (`pub`, `pvt`): nobody can be paged about or quarantine
        // "the internet"; its traffic is judged on the in-cluster side (a flood from `pub` is the
        // victim's ingress).
        if agg.outside {
            return;
        }
        let mut best: Option<(f64, Feature, f64, f64, f64)> = None;
        for f in FEATURES {
            let x = f.value(agg);
            let (mean, sd) = b.usual(f, ctx.window_start);
            let min_abs = match f {
                Feature::BytesOut | Feature::BytesIn => cfg.min_bytes,
                Feature::PacketsIn => cfg.min_packets,
                _ => cfg.min_connections,
            } as f64;
            let z = robust_z(x, mean, sd, 0.1, 1.0);
            let ratio = x / mean.max(1.0);
            let score = (z / cfg.z_threshold)
                .min(ratio / cfg.min_ratio)
                .min((x - mean) / min_abs);
            if best.is_none_or(|(s, ..)| score > s) {
                let upper = mean + cfg.z_threshold * sd.max(0.1 * mean).max(1.0);
                best = Some((score, f, x, mean, upper));
            }
        }
        let Some((score, f, x, mean, upper)) = best else {
            return;
        };
        if score < 1.0 && !(ctx.soft && score > 0.2) {
            return;
        }
        let egress = !f.is_ingress();
        out.push(Finding {
            detector: self.name(),
            workload,
            score: score.max(0.0),
            severity: severity_for(score, 55),
            feature: f.name(),
            observed: x,
            expected: mean,
            band: Band {
                lower: 0.0,
                upper,
            },
            description: format!(
                "{} of {:.0} against a usual {:.0} ({:.1}x)",
                f.name(),
                x,
                mean,
                x / mean.max(1.0)
            ),
            evidence: serde_json::json!({
                "feature": f.name(),
                "observed": x,
                "expected": mean,
                "windows_of_history": b.windows_seen,
                "top_peers": top_peers_json(agg, egress, 10, |p| p.bytes_out + p.bytes_in + p.connections),
            }),
            peer: None,
            dest_port: None,
            scope: Scope {
                egress,
                ..Scope::default()
            },
        });
    }
}
