//! Port scan: one workload reaching many distinct destination ports in a window (Calico's default
//! was 500 per bucket), or many distinct *denied* ports (Zeek's default is 15), which shows probing even
//! when allowed flows are aggregated past their ports.

use crate::alert::Band;
use crate::baseline::{Baseline, Feature};
use crate::detect::{
    distinct_verdict, severity_for, top_peers_json, DetectContext, Detector, DistinctThresholds,
    Finding, Scope,
};
use crate::flow::WorkloadId;
use crate::window::WindowAggregate;
use serde::{Deserialize, Serialize};

/// `[detect.port_scan]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortScanConfig {
    /// Run this detector.
    pub enabled: bool,
    /// Distinct destination ports from one workload in one window.
    pub distinct_ports: u64,
    /// Distinct destination ports of denied flows.
    pub distinct_denied_ports: u64,
    /// Relative to history (once the baseline is warm): alert when distinct ports exceed both this
    /// floor and `relative_factor` times the workload's usual count.
    pub relative_min_ports: u64,
    /// See `relative_min_ports`.
    pub relative_factor: f64,
}

impl Default for PortScanConfig {
    fn default() -> Self {
        PortScanConfig {
            enabled: true,
            distinct_ports: 500,
            distinct_denied_ports: 15,
            relative_min_ports: 50,
            relative_factor: 10.0,
        }
    }
}

impl PortScanConfig {
    /// Checks values.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.distinct_ports < 2 {
            return Err(("distinct_ports".into(), "must be at least 2".into()));
        }
        if self.distinct_denied_ports < 2 {
            return Err(("distinct_denied_ports".into(), "must be at least 2".into()));
        }
        Ok(())
    }
}

/// The port-scan detector.
pub struct PortScan;

impl Detector for PortScan {
    fn name(&self) -> &'static str {
        "port_scan"
    }

    fn evaluate(
        &self,
        ctx: &DetectContext<'_>,
        workload: WorkloadId,
        agg: &WindowAggregate,
        baseline: Option<&Baseline>,
        out: &mut Vec<Finding>,
    ) {
        let cfg = &ctx.cfg.port_scan;
        let ports = agg.dst_ports.count() as f64;
        let denied = agg.denied_ports.count() as f64;
        let usual = baseline
            .filter(|b| ctx.is_warm(Some(b)))
            .map(|b| b.mean(Feature::DstPorts));
        let v = distinct_verdict(
            ports,
            denied,
            usual,
            &DistinctThresholds {
                all: cfg.distinct_ports,
                denied: cfg.distinct_denied_ports,
                relative_min: cfg.relative_min_ports,
                relative_factor: cfg.relative_factor,
            },
        );
        let (ratio, observed, threshold, denied_only) =
            (v.ratio, v.observed, v.threshold, v.denied_only);
        let feature = if denied_only {
            "distinct_denied_dest_ports"
        } else {
            "distinct_dest_ports"
        };
        if ctx.below_report(ratio) {
            return;
        }
        out.push(Finding {
            detector: self.name(),
            workload,
            score: ratio,
            severity: severity_for(ratio, 70),
            feature,
            observed,
            expected: 0.0,
            band: Band {
                lower: 0.0,
                upper: threshold as f64,
            },
            description: format!(
                "{} distinct destination ports ({} denied) from one workload in one window; threshold {}",
                ports as u64, denied as u64, threshold
            ),
            evidence: serde_json::json!({
                "distinct_dest_ports": ports as u64,
                "distinct_denied_dest_ports": denied as u64,
                "distinct_dest_hosts": agg.dst_hosts.count(),
                "denied_flows": agg.denied_out,
                "top_peers": top_peers_json(agg, true, 10, |p| p.records as u64),
            }),
            peer: single_peer(agg),
            dest_port: None,
            scope: Scope {
                egress: true,
                denied_only,
                ..Scope::default()
            },
        });
    }
}

/// The one egress peer when the workload talked to exactly one (a vertical scan's target).
pub fn single_peer(agg: &WindowAggregate) -> Option<WorkloadId> {
    let mut it = agg.peers.iter().filter(|p| p.egress).map(|p| p.peer);
    let first = it.next()?;
    if it.all(|p| p == first) && agg.peers_overflow == 0 {
        Some(first)
    } else {
        None
    }
}
