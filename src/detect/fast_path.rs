//! Fast path: port scans and IP sweeps judged on the *open* window, at the record that crosses an
//! absolute threshold, so an early alert leaves within one batch of the crossing record instead of
//! at the window's close (minutes later with Calico's 5-minute flush).
//!
//! Only the absolute thresholds of [`super::scan`] and [`super::sweep`] (all destinations and denied
//! ones) are checked here: they need no baseline and only grow within a window, so a crossing seen
//! early is always confirmed at close. The crossing record is the same whatever the thread count or
//! batch size (a workload's records are folded in input order by the one shard that owns it), so
//! the set of early alerts is deterministic too. The window-close alert of the same detector,
//! workload and window follows with the final counts (under its own id, so consumers that
//! de-duplicate by id keep both).

use crate::detect::{
    scan::PortScan, sweep::IpSweep, DetectConfig, DetectContext, Detector, Finding,
};
use crate::flow::WorkloadId;
use crate::window::aggregate::grew;
use crate::window::WindowAggregate;
use serde::{Deserialize, Serialize};

/// `[detect.fast_path]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FastPathConfig {
    /// Raise early (provisional) port-scan and IP-sweep alerts while the window is still open.
    pub enabled: bool,
}

impl Default for FastPathConfig {
    fn default() -> Self {
        FastPathConfig { enabled: true }
    }
}

/// [`WindowAggregate::early_fired`] bit of the port-scan detector.
pub const PORT_SCAN: u8 = 1;
/// [`WindowAggregate::early_fired`] bit of the IP-sweep detector.
pub const IP_SWEEP: u8 = 2;

/// The static name of a fast-path detector (restoring suppression state from a snapshot).
pub fn detector_name(name: &str) -> Option<&'static str> {
    ["port_scan", "ip_sweep"].into_iter().find(|d| *d == name)
}

/// Id of the early alert of `detector` for `workload` (its key) in the window starting at
/// `window_start`: distinct from the window-close alert's id, so a consumer that de-duplicates by
/// id keeps both the early warning and the final verdict.
pub fn early_alert_id(detector: &str, workload: &str, window_start: i64) -> String {
    crate::alert::alert_id(&format!("{detector}/early"), workload, window_start)
}

/// Absolute thresholds the fast path watches, read once from the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FastPath {
    scan: Option<(u64, u64)>,
    sweep: Option<(u64, u64)>,
}

impl FastPath {
    /// `None` when the fast path (or both detectors it serves) is disabled.
    pub fn from_config(cfg: &DetectConfig) -> Option<Self> {
        if !cfg.fast_path.enabled {
            return None;
        }
        let scan = cfg.port_scan.enabled.then_some((
            cfg.port_scan.distinct_ports,
            cfg.port_scan.distinct_denied_ports,
        ));
        let sweep = cfg.ip_sweep.enabled.then_some((
            cfg.ip_sweep.distinct_hosts,
            cfg.ip_sweep.distinct_denied_hosts,
        ));
        (scan.is_some() || sweep.is_some()).then_some(FastPath { scan, sweep })
    }

    /// Detectors whose threshold `agg` crossed with the record that changed the `changed` counters
    /// (see [`WindowAggregate::add`]) and that have not fired for this window yet; marks them fired.
    #[inline]
    pub fn crossed(&self, agg: &mut WindowAggregate, changed: u8) -> u8 {
        if changed == 0 {
            return 0;
        }
        let mut bits = 0;
        if let Some((all, denied)) = self.scan {
            if agg.early_fired & PORT_SCAN == 0
                && ((changed & grew::DST_PORTS != 0 && agg.dst_ports.count() >= all)
                    || (changed & grew::DENIED_PORTS != 0 && agg.denied_ports.count() >= denied))
            {
                bits |= PORT_SCAN;
            }
        }
        if let Some((all, denied)) = self.sweep {
            if agg.early_fired & IP_SWEEP == 0
                && ((changed & grew::DST_HOSTS != 0 && agg.dst_hosts.count() >= all)
                    || (changed & grew::DENIED_HOSTS != 0 && agg.denied_hosts.count() >= denied))
            {
                bits |= IP_SWEEP;
            }
        }
        agg.early_fired |= bits;
        bits
    }
}

/// The findings of the detectors in `bits` on the open window's aggregate as it stands, judged
/// without history (the baseline-relative threshold waits for the close).
pub fn findings(
    ctx: &DetectContext<'_>,
    workload: WorkloadId,
    agg: &WindowAggregate,
    bits: u8,
    out: &mut Vec<Finding>,
) {
    let before = out.len();
    if bits & PORT_SCAN != 0 {
        PortScan.evaluate(ctx, workload, agg, None, out);
    }
    if bits & IP_SWEEP != 0 {
        IpSweep.evaluate(ctx, workload, agg, None, out);
    }
    // Soft findings (for `--scores`) are not alerts.
    let mut fresh = out.split_off(before);
    fresh.retain(|f| f.score >= 1.0);
    out.append(&mut fresh);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Action, FlowRecord};
    use crate::window::Side;

    fn probe(port: u16, deny: bool) -> FlowRecord {
        let mut r = FlowRecord::default();
        r.src.id = WorkloadId(1);
        r.dst.id = WorkloadId(2);
        r.dst.port = Some(port);
        r.action = if deny { Action::Deny } else { Action::Allow };
        r
    }

    #[test]
    fn fires_once_at_the_crossing_record() {
        let cfg = DetectConfig::default();
        let fp = FastPath::from_config(&cfg).expect("enabled by default");
        let mut agg = WindowAggregate::default();
        let threshold = cfg.port_scan.distinct_denied_ports as u16;
        let mut fired_at = Vec::new();
        for port in 1..=threshold + 5 {
            let changed = agg.add(&probe(port, true), Side::Source);
            if fp.crossed(&mut agg, changed) & PORT_SCAN != 0 {
                fired_at.push(port);
            }
        }
        assert_eq!(fired_at, vec![threshold]);
    }

    #[test]
    fn repeated_ports_do_not_fire_and_allowed_ports_need_the_higher_threshold() {
        let cfg = DetectConfig::default();
        let fp = FastPath::from_config(&cfg).expect("enabled");
        let mut agg = WindowAggregate::default();
        for _ in 0..1000 {
            let changed = agg.add(&probe(80, true), Side::Source);
            assert_eq!(fp.crossed(&mut agg, changed), 0);
        }
        let mut agg = WindowAggregate::default();
        let mut fired = 0;
        for port in 1..100u16 {
            let changed = agg.add(&probe(port, false), Side::Source);
            fired += fp.crossed(&mut agg, changed);
        }
        assert_eq!(fired, 0, "99 allowed ports are under distinct_ports = 500");
    }

    #[test]
    fn disabled_by_config() {
        let mut cfg = DetectConfig::default();
        cfg.fast_path.enabled = false;
        assert!(FastPath::from_config(&cfg).is_none());
    }
}
