//! Multivariate: the window's feature vector (log-scaled bytes, packets, connections, distinct ports
//! and hosts, denied flows) against the workload's own history (root-mean-square of per-feature robust
//! z-scores) and against its peer group (the namespace's mean vector in the same window). Catches a
//! workload whose features move together even when no single one crosses its own threshold.

use crate::alert::Band;
use crate::baseline::{Baseline, Feature};
use crate::detect::{robust_z, severity_for, DetectContext, Detector, Finding, Scope};
use crate::flow::WorkloadId;
use crate::window::WindowAggregate;
use ndarray::aview1;
use serde::{Deserialize, Serialize};

/// `[detect.multivariate]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultivariateConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Root-mean-square z-score against own history that raises an alert.
    pub threshold: f64,
    /// Distance (log scale, per feature) from the namespace profile that also must be exceeded.
    pub peer_distance: f64,
    /// Workloads in a namespace window needed for a profile.
    pub min_peers: usize,
}

impl Default for MultivariateConfig {
    fn default() -> Self {
        MultivariateConfig {
            enabled: true,
            threshold: 8.0,
            peer_distance: 2.0,
            min_peers: 3,
        }
    }
}

/// Features in the vector.
pub const VECTOR: [Feature; 8] = [
    Feature::BytesOut,
    Feature::BytesIn,
    Feature::PacketsOut,
    Feature::ConnsOut,
    Feature::ConnsIn,
    Feature::DeniedOut,
    Feature::DstPorts,
    Feature::DstHosts,
];

/// A window's log-scaled features, in [`VECTOR`]'s order. A stack array: the detector and the
/// close's namespace profiles build one per aggregate, a million per window in a large cluster.
pub type Vector = [f64; VECTOR.len()];

/// Mean log-feature vector of a namespace in one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// Sum of vectors.
    pub sum: Vector,
    /// Workloads summed.
    pub n: usize,
}

impl Profile {
    /// Adds one workload's vector.
    pub fn add(&mut self, v: &Vector) {
        for (s, x) in self.sum.iter_mut().zip(v) {
            *s += x;
        }
        self.n += 1;
    }
}

/// The log-scaled feature vector of a window.
pub fn vector(agg: &WindowAggregate) -> Vector {
    VECTOR.map(|f| f.value(agg).ln_1p())
}

/// Root mean square of a vector's positive parts (ndarray's sum: its eight-lane fold, the same
/// rounding whatever holds the vector).
fn positive_rms(v: &Vector) -> f64 {
    let squares = v.map(|x| x.max(0.0).powi(2));
    (aview1(&squares).sum() / VECTOR.len() as f64).sqrt()
}

/// The multivariate detector.
pub struct Multivariate;

impl Detector for Multivariate {
    fn name(&self) -> &'static str {
        "multivariate"
    }

    fn evaluate(
        &self,
        ctx: &DetectContext<'_>,
        workload: WorkloadId,
        agg: &WindowAggregate,
        baseline: Option<&Baseline>,
        out: &mut Vec<Finding>,
    ) {
        let cfg = &ctx.cfg.multivariate;
        let Some(b) = baseline.filter(|b| ctx.is_warm(Some(b))) else {
            return;
        };
        if agg.outside {
            return;
        }
        let z = VECTOR.map(|f| {
            let (mean, sd) = b.usual(f, ctx.window_start);
            robust_z(f.value(agg), mean, sd, 0.25, 1.0).clamp(-20.0, 20.0)
        });
        let rms = positive_rms(&z);
        // The score is the lesser of the two distances: when the own-history one is already too
        // weak to report, the peer distance cannot change that (most windows stop here).
        let own = rms / cfg.threshold;
        if own < 1.0 && !(ctx.soft && own > 0.2) {
            return;
        }
        let ns = agg.namespace;
        let peer_dist = match ctx.namespace_profiles.get(&ns) {
            Some(p) if p.n > cfg.min_peers => {
                // Leave this workload out of its own peer mean.
                let x = vector(agg);
                let others = (p.n - 1) as f64;
                let mut d = x;
                for ((d, x), s) in d.iter_mut().zip(&x).zip(&p.sum) {
                    *d = x - (s - x) / others;
                }
                positive_rms(&d)
            }
            _ => f64::INFINITY,
        };
        let score = own.min(peer_dist / cfg.peer_distance);
        if !score.is_finite() || (score < 1.0 && !(ctx.soft && score > 0.2)) {
            return;
        }
        let top: Vec<_> = VECTOR
            .iter()
            .zip(z.iter())
            .filter(|(_, z)| **z > 3.0)
            .map(|(f, z)| serde_json::json!({"feature": f.name(), "z": (z * 10.0).round() / 10.0, "observed": f.value(agg), "expected": b.mean(*f)}))
            .collect();
        out.push(Finding {
            detector: self.name(),
            workload,
            score,
            severity: severity_for(score, 45),
            feature: "feature_vector_rms_z",
            observed: rms,
            expected: 0.0,
            band: Band {
                lower: 0.0,
                upper: cfg.threshold,
            },
            description: format!(
                "feature vector {rms:.1} standard deviations from its history and {peer_dist:.1} from its namespace peers"
            ),
            evidence: serde_json::json!({ "elevated_features": top, "rms_z": rms, "namespace_distance": if peer_dist.is_finite() { peer_dist } else { -1.0 } }),
            peer: None,
            dest_port: None,
            scope: Scope {
                egress: true,
                ..Scope::default()
            },
        });
    }
}
