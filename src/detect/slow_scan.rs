//! Slow scan: a port scan or sweep spread thin over many windows (a few ports per window for hours),
//! which the per-window `port_scan` and `ip_sweep` thresholds never see. Judged on the workload's
//! long-horizon distinct counters ([`crate::baseline::horizon`]): distinct destination ports, denied
//! ports and denied hosts over the last `horizon`, this window included.
//!
//! It fires only while the window itself stays below the per-window thresholds, so a fast scan is
//! reported once, by the detector made for it.

use crate::alert::Band;
use crate::baseline::Baseline;
use crate::detect::{severity_for, top_peers_json, DetectContext, Detector, Finding, Scope};
use crate::flow::WorkloadId;
use crate::window::WindowAggregate;
use serde::{Deserialize, Serialize};

/// `[detect.slow_scan]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlowScanConfig {
    /// Run this detector (and keep the long-horizon counters it reads).
    pub enabled: bool,
    /// How far back the distinct counters reach (`6h`).
    pub horizon: String,
    /// Distinct destination ports over the horizon.
    pub distinct_ports: u64,
    /// Distinct denied destination ports over the horizon.
    pub distinct_denied_ports: u64,
    /// Distinct denied destination hosts over the horizon.
    pub distinct_denied_hosts: u64,
}

impl Default for SlowScanConfig {
    fn default() -> Self {
        SlowScanConfig {
            enabled: true,
            horizon: "6h".into(),
            distinct_ports: 1000,
            distinct_denied_ports: 60,
            distinct_denied_hosts: 60,
        }
    }
}

impl SlowScanConfig {
    /// Checks values; keys are relative to `detect.slow_scan`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let h =
            crate::window::parse_duration_s(&self.horizon).map_err(|m| ("horizon".into(), m))?;
        if h < 60 {
            return Err(("horizon".into(), "must be at least 1m".into()));
        }
        for (key, v) in [
            ("distinct_ports", self.distinct_ports),
            ("distinct_denied_ports", self.distinct_denied_ports),
            ("distinct_denied_hosts", self.distinct_denied_hosts),
        ] {
            if v < 2 {
                return Err((key.into(), "must be at least 2".into()));
            }
        }
        Ok(())
    }

    /// The horizon in seconds (0 when disabled).
    pub fn horizon_s(&self) -> i64 {
        if !self.enabled {
            return 0;
        }
        crate::window::parse_duration_s(&self.horizon).unwrap_or(6 * 3600)
    }
}

/// The slow-scan detector.
pub struct SlowScan;

impl Detector for SlowScan {
    fn name(&self) -> &'static str {
        "slow_scan"
    }

    fn evaluate(
        &self,
        ctx: &DetectContext<'_>,
        workload: WorkloadId,
        agg: &WindowAggregate,
        baseline: Option<&Baseline>,
        out: &mut Vec<Finding>,
    ) {
        let cfg = &ctx.cfg.slow_scan;
        let Some(h) = baseline.and_then(|b| b.horizon.as_deref()) else {
            return;
        };
        if agg.records_out == 0 || fast_detectors_fire(ctx, agg) {
            return;
        }
        let bucket_s = (cfg.horizon_s() / crate::baseline::horizon::BUCKETS as i64).max(1);
        let c = h.counts(ctx.window_start, bucket_s, agg);
        let judged = [
            (
                "distinct_dest_ports_horizon",
                c.ports,
                cfg.distinct_ports,
                false,
            ),
            (
                "distinct_denied_dest_ports_horizon",
                c.denied_ports,
                cfg.distinct_denied_ports,
                true,
            ),
            (
                "distinct_denied_dest_hosts_horizon",
                c.denied_hosts,
                cfg.distinct_denied_hosts,
                true,
            ),
        ];
        let Some(&(feature, observed, threshold, denied_only)) = judged
            .iter()
            .max_by(|a, b| (a.1 as f64 / a.2 as f64).total_cmp(&(b.1 as f64 / b.2 as f64)))
        else {
            return;
        };
        let ratio = observed as f64 / threshold as f64;
        if ctx.below_report(ratio) {
            return;
        }
        out.push(Finding {
            detector: self.name(),
            workload,
            score: ratio,
            // Banded by doublings: a slow scan grows a little every window, and the alert book
            // re-emits on every severity rise.
            severity: severity_for(2f64.powi(ratio.log2().floor() as i32), 60),
            feature,
            observed: observed as f64,
            expected: 0.0,
            band: Band {
                lower: 0.0,
                upper: threshold as f64,
            },
            description: format!(
                "{} distinct destination ports, {} denied ports and {} denied hosts over the last {}, \
                 though this window has only {} ports and {} hosts; threshold {} ({})",
                c.ports,
                c.denied_ports,
                c.denied_hosts,
                cfg.horizon,
                agg.dst_ports.count(),
                agg.dst_hosts.count(),
                threshold,
                feature
            ),
            evidence: serde_json::json!({
                "horizon": cfg.horizon,
                "distinct_dest_ports_horizon": c.ports,
                "distinct_denied_dest_ports_horizon": c.denied_ports,
                "distinct_denied_dest_hosts_horizon": c.denied_hosts,
                "distinct_dest_ports_window": agg.dst_ports.count(),
                "distinct_denied_dest_ports_window": agg.denied_ports.count(),
                "distinct_dest_hosts_window": agg.dst_hosts.count(),
                "denied_flows_window": agg.denied_out,
                "top_peers": top_peers_json(agg, true, 10, |p| p.records as u64),
            }),
            peer: crate::detect::scan::single_peer(agg),
            dest_port: None,
            scope: Scope {
                egress: true,
                denied_only,
                ..Scope::default()
            },
        });
    }
}

/// Whether this window alone crosses a per-window scan or sweep threshold (those detectors report it).
fn fast_detectors_fire(ctx: &DetectContext<'_>, agg: &WindowAggregate) -> bool {
    let (ps, sw) = (&ctx.cfg.port_scan, &ctx.cfg.ip_sweep);
    (ps.enabled
        && (agg.dst_ports.count() >= ps.distinct_ports
            || agg.denied_ports.count() >= ps.distinct_denied_ports))
        || (sw.enabled
            && (agg.dst_hosts.count() >= sw.distinct_hosts
                || agg.denied_hosts.count() >= sw.distinct_denied_hosts))
}
