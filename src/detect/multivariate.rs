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

/// Whether a score is too weak to report: under 1, and (in soft scoring for `--scores`) at most a
/// fifth.
fn unreported(ctx: &DetectContext<'_>, score: f64) -> bool {
    score < 1.0 && !(ctx.soft && score > 0.2)
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
        if unreported(ctx, own) {
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
        if !score.is_finite() || unreported(ctx, score) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::{ClusterState, Ewm};
    use crate::detect::DetectConfig;
    use rustc_hash::FxHashMap;

    const NS: u64 = 42;

    /// A warm baseline whose every feature has mean 100 and standard deviation 10.
    fn usual() -> Baseline {
        let mut b = Baseline {
            windows_seen: 50,
            ..Baseline::default()
        };
        for f in VECTOR {
            b.features[f as usize] = Ewm {
                mean: 100.0,
                var: 100.0,
            };
        }
        b
    }

    /// A window with `x` in every counted feature (no distinct ports or hosts).
    fn window(x: u64) -> WindowAggregate {
        WindowAggregate {
            namespace: NS,
            records_out: 1,
            bytes_out: x,
            bytes_in: x,
            packets_out: x,
            conns_out: x,
            conns_in: x,
            denied_out: x,
            ..WindowAggregate::default()
        }
    }

    /// The namespace's profile: this workload and four peers with `peer` in every feature.
    fn profiles(agg: &WindowAggregate, peer: &WindowAggregate) -> FxHashMap<u64, Profile> {
        let mut p = Profile::default();
        p.add(&vector(agg));
        for _ in 0..4 {
            p.add(&vector(peer));
        }
        FxHashMap::from_iter([(NS, p)])
    }

    fn judge(
        agg: &WindowAggregate,
        profiles: &FxHashMap<u64, Profile>,
        soft: bool,
    ) -> Vec<Finding> {
        let cfg = DetectConfig::default();
        let cluster = ClusterState::default();
        let ctx = DetectContext {
            window: 10,
            window_start: 3000,
            window_end: 3300,
            cfg: &cfg,
            soft,
            cluster: &cluster,
            warmup_windows: 12,
            namespace_profiles: profiles,
        };
        let mut out = Vec::new();
        Multivariate.evaluate(&ctx, WorkloadId(1), agg, Some(&usual()), &mut out);
        out
    }

    #[test]
    fn a_window_far_from_its_history_and_its_peers_alerts_with_both_distances() {
        let agg = window(100_000);
        let found = judge(&agg, &profiles(&agg, &window(0)), false);
        assert_eq!(found.len(), 1);
        // Six features at the z-score clamp of 20, the distinct counts below their mean.
        let rms = (6.0 * 400.0 / 8.0f64).sqrt();
        assert!(
            (found[0].observed - rms).abs() < 1e-9,
            "{}",
            found[0].observed
        );
        // The peers' mean without this workload is the zero vector: the distance is the
        // workload's own log vector.
        let x = 100_000f64.ln_1p();
        let peer = (6.0 * x * x / 8.0).sqrt();
        let got = found[0].evidence["namespace_distance"].as_f64();
        assert!(got.is_some_and(|d| (d - peer).abs() < 1e-9), "{got:?}");
        assert!((found[0].score - rms / 8.0).abs() < 1e-9);
    }

    #[test]
    fn a_window_like_its_peers_does_not_alert_however_far_from_its_history() {
        let agg = window(100_000);
        assert!(judge(&agg, &profiles(&agg, &agg), false).is_empty());
    }

    #[test]
    fn a_weak_own_distance_is_reported_only_in_soft_scoring_and_a_usual_window_never() {
        // z = (215 - 100) / 25 (the spread's floor is a quarter of the mean) = 4.6 on six
        // features: about half the threshold.
        let agg = window(215);
        let peers = profiles(&agg, &window(0));
        assert!(judge(&agg, &peers, false).is_empty());
        let soft = judge(&agg, &peers, true);
        assert_eq!(soft.len(), 1);
        let own = (6.0 * 4.6f64.powi(2) / 8.0).sqrt() / 8.0;
        assert!((soft[0].score - own).abs() < 1e-9, "{}", soft[0].score);
        let usual = window(100);
        assert!(judge(&usual, &profiles(&usual, &window(0)), true).is_empty());
    }
}
