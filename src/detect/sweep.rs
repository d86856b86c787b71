//! IP sweep: one workload reaching many distinct destination hosts in a window (Calico's default was
//! 32), or many distinct *denied* hosts (default 25).

use crate::alert::Band;
use crate::baseline::{Baseline, Feature};
use crate::detect::{
    distinct_verdict, severity_for, top_peers_json, DetectContext, Detector, DistinctThresholds,
    Finding, Scope,
};
use crate::flow::WorkloadId;
use crate::window::WindowAggregate;
use serde::{Deserialize, Serialize};

/// `[detect.ip_sweep]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpSweepConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Distinct destination hosts from one workload in one window.
    pub distinct_hosts: u64,
    /// Distinct destination hosts of denied flows.
    pub distinct_denied_hosts: u64,
    /// Relative to history (once the baseline is warm): alert when distinct hosts exceed both this
    /// floor and `relative_factor` times the workload's usual count.
    pub relative_min_hosts: u64,
    /// See `relative_min_hosts`.
    pub relative_factor: f64,
}

impl Default for IpSweepConfig {
    fn default() -> Self {
        IpSweepConfig {
            enabled: true,
            distinct_hosts: 32,
            distinct_denied_hosts: 25,
            relative_min_hosts: 16,
            relative_factor: 8.0,
        }
    }
}

impl IpSweepConfig {
    /// Checks values.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.distinct_hosts < 2 {
            return Err(("distinct_hosts".into(), "must be at least 2".into()));
        }
        if self.distinct_denied_hosts < 2 {
            return Err(("distinct_denied_hosts".into(), "must be at least 2".into()));
        }
        Ok(())
    }
}

/// The IP-sweep detector.
pub struct IpSweep;

impl Detector for IpSweep {
    fn name(&self) -> &'static str {
        "ip_sweep"
    }

    fn evaluate(
        &self,
        ctx: &DetectContext<'_>,
        workload: WorkloadId,
        agg: &WindowAggregate,
        baseline: Option<&Baseline>,
        out: &mut Vec<Finding>,
    ) {
        let cfg = &ctx.cfg.ip_sweep;
        let hosts = agg.dst_hosts.count() as f64;
        let denied = agg.denied_hosts.count() as f64;
        let usual = baseline
            .filter(|b| ctx.is_warm(Some(b)))
            .map(|b| b.mean(Feature::DstHosts));
        let v = distinct_verdict(
            hosts,
            denied,
            usual,
            &DistinctThresholds {
                all: cfg.distinct_hosts,
                denied: cfg.distinct_denied_hosts,
                relative_min: cfg.relative_min_hosts,
                relative_factor: cfg.relative_factor,
            },
        );
        let (ratio, observed, threshold, denied_only) =
            (v.ratio, v.observed, v.threshold, v.denied_only);
        let feature = if denied_only {
            "distinct_denied_dest_hosts"
        } else {
            "distinct_dest_hosts"
        };
        if ctx.below_report(ratio) {
            return;
        }
        out.push(Finding {
            detector: self.name(),
            workload,
            score: ratio,
            severity: severity_for(ratio, 65),
            feature,
            observed,
            expected: 0.0,
            band: Band {
                lower: 0.0,
                upper: threshold as f64,
            },
            description: format!(
                "{} distinct destination hosts ({} denied) from one workload in one window; threshold {}",
                hosts as u64, denied as u64, threshold
            ),
            evidence: serde_json::json!({
                "distinct_dest_hosts": hosts as u64,
                "distinct_denied_dest_hosts": denied as u64,
                "distinct_dest_ports": agg.dst_ports.count(),
                "top_peers": top_peers_json(agg, true, 10, |p| p.records as u64),
            }),
            peer: None,
            dest_port: None,
            scope: Scope {
                egress: true,
                denied_only,
                ..Scope::default()
            },
        });
    }
}
