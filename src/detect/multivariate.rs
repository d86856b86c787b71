//! Multivariate: the window's feature vector (log-scaled bytes, packets, connections, distinct ports
//! and hosts, denied flows) against the workload's own history (root-mean-square of per-feature robust
//! z-scores) and against its peer group (the namespace's mean vector in the same window). Catches a
//! workload whose features move together even when no single one crosses its own threshold.

use crate::alert::Band;
use crate::baseline::{Baseline, Feature};
use crate::detect::{robust_z, severity_for, DetectContext, Detector, Finding, Scope};
use crate::flow::WorkloadId;
use crate::window::WindowAggregate;
use ndarray::Array1;
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

/// Mean log-feature vector of a namespace in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Sum of vectors.
    pub sum: Array1<f64>,
    /// Workloads summed.
    pub n: usize,
}

/// Fixed-point units per unit of a log-scaled feature: 2^-40 (about 1e-12) resolution, and a
/// feature's `ln_1p` is at most about 710, so a billion workloads still sum far inside an `i128`.
const PROFILE_SCALE: f64 = (1u64 << 40) as f64;

/// A namespace's vectors summed in fixed point while a window closes. Integer sums are exact, so
/// the profile is the same whatever order its workloads are added in: the close adds them in the
/// order the shards' tables hold them (one pass that reads the aggregates in memory order), and
/// that order depends on the thread count, which scores must not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileSum {
    fixed: [i128; VECTOR.len()],
    n: usize,
}

impl ProfileSum {
    /// Adds one workload's window.
    #[inline]
    pub fn add(&mut self, agg: &WindowAggregate) {
        for (sum, f) in self.fixed.iter_mut().zip(VECTOR) {
            *sum += (f.value(agg).ln_1p() * PROFILE_SCALE).round() as i128;
        }
        self.n += 1;
    }

    /// The profile the detector reads.
    pub fn profile(&self) -> Profile {
        Profile {
            sum: self
                .fixed
                .iter()
                .map(|&s| s as f64 / PROFILE_SCALE)
                .collect(),
            n: self.n,
        }
    }
}

/// The log-scaled feature vector of a window.
pub fn vector(agg: &WindowAggregate) -> Array1<f64> {
    Array1::from_iter(VECTOR.iter().map(|f| f.value(agg).ln_1p()))
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
        let z = Array1::from_iter(VECTOR.iter().map(|&f| {
            let (mean, sd) = b.usual(f, ctx.window_start);
            robust_z(f.value(agg), mean, sd, 0.25, 1.0).clamp(-20.0, 20.0)
        }));
        let rms = (z.mapv(|v| v.max(0.0).powi(2)).sum() / VECTOR.len() as f64).sqrt();
        let ns = agg.namespace;
        let x = vector(agg);
        let peer_dist = match ctx.namespace_profiles.get(&ns) {
            Some(p) if p.n > cfg.min_peers => {
                // Leave this workload out of its own peer mean.
                let mean = (&p.sum - &x) / (p.n - 1) as f64;
                let d = &x - &mean;
                (d.mapv(|v| v.max(0.0).powi(2)).sum() / VECTOR.len() as f64).sqrt()
            }
            _ => f64::INFINITY,
        };
        let score = (rms / cfg.threshold).min(peer_dist / cfg.peer_distance);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(bytes_out: u64, conns_out: u64, packets_out: u64) -> WindowAggregate {
        WindowAggregate {
            records_out: 1,
            bytes_out,
            bytes_in: bytes_out / 3,
            packets_out,
            conns_out,
            ..WindowAggregate::default()
        }
    }

    #[test]
    fn a_profile_sum_is_the_same_in_any_order_and_matches_the_plain_sum() {
        let aggs: Vec<WindowAggregate> = (0..1000u64)
            .map(|i| agg(i * 7919 % 1_000_003, i % 17, i * 31 % 9973))
            .collect();
        let mut forward = ProfileSum::default();
        aggs.iter().for_each(|a| forward.add(a));
        let mut backward = ProfileSum::default();
        aggs.iter().rev().for_each(|a| backward.add(a));
        let mut interleaved = ProfileSum::default();
        aggs.iter().step_by(2).for_each(|a| interleaved.add(a));
        aggs.iter()
            .skip(1)
            .step_by(2)
            .for_each(|a| interleaved.add(a));
        // Bit for bit, not merely close: scores must not depend on the shards' order.
        assert_eq!(forward, backward);
        assert_eq!(forward, interleaved);

        let profile = forward.profile();
        assert_eq!(profile.n, 1000);
        let plain: Array1<f64> = aggs
            .iter()
            .fold(Array1::zeros(VECTOR.len()), |s, a| s + vector(a));
        for (&fixed, &plain) in profile.sum.iter().zip(plain.iter()) {
            assert!((fixed - plain).abs() < 1e-6_f64, "{fixed} against {plain}");
        }
        assert!(
            plain[0] > 1000.0,
            "the bytes feature was summed: {}",
            plain[0]
        );
    }
}
