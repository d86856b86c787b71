//! [`ScanHorizon`]: distinct destinations of one workload group over a long horizon (hours), so a scan
//! or sweep spread thin over many windows (a few ports per window) still adds up somewhere.
//!
//! The horizon is cut into [`BUCKETS`] buckets; each keeps the distinct counters (exact while small,
//! HyperLogLog after, see [`DistinctCounter`]) of the windows that fell in it, and the count over the
//! horizon is their union. A bucket is reused when its slot comes round again, so the state is a fixed
//! handful of counters per workload: the count covers between `(BUCKETS-1)/BUCKETS` of the horizon and
//! all of it. Only workloads that probe (denied flows, or many ports in a window) get one.

use crate::baseline::sketch::DistinctCounter;
use crate::window::WindowAggregate;
use serde::{Deserialize, Serialize};

/// Buckets per horizon.
pub const BUCKETS: usize = 4;
/// A workload gets a horizon once a window of it has denied flows or at least this many distinct
/// destination ports.
pub const PORTS_TO_TRACK: u64 = 8;

/// Distinct destinations of one bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HorizonBucket {
    /// Bucket index (`window_start / bucket length`); which span of time it holds.
    pub index: i64,
    /// Distinct destination ports (all flows).
    pub ports: DistinctCounter,
    /// Distinct destination ports of denied flows.
    pub denied_ports: DistinctCounter,
    /// Distinct destination hosts of denied flows.
    pub denied_hosts: DistinctCounter,
}

/// Distinct counts over the horizon.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HorizonCounts {
    /// Distinct destination ports.
    pub ports: u64,
    /// Distinct denied destination ports.
    pub denied_ports: u64,
    /// Distinct denied destination hosts.
    pub denied_hosts: u64,
}

/// The long-horizon distinct counters of one workload group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanHorizon {
    /// Ring of buckets, slot = index mod [`BUCKETS`].
    pub buckets: [HorizonBucket; BUCKETS],
}

/// Whether a window's activity is worth a horizon.
pub fn worth_tracking(agg: &WindowAggregate) -> bool {
    agg.denied_out > 0 || agg.dst_ports.count() >= PORTS_TO_TRACK
}

impl ScanHorizon {
    /// Folds a closed window (starting at `window_start`) in; `bucket_s` is the horizon / [`BUCKETS`].
    pub fn record(&mut self, window_start: i64, bucket_s: i64, agg: &WindowAggregate) {
        let index = window_start.div_euclid(bucket_s.max(1));
        let b = &mut self.buckets[index.rem_euclid(BUCKETS as i64) as usize];
        if b.index != index {
            *b = HorizonBucket {
                index,
                ..HorizonBucket::default()
            };
        }
        b.ports.merge(&agg.dst_ports);
        b.denied_ports.merge(&agg.denied_ports);
        b.denied_hosts.merge(&agg.denied_hosts);
    }

    /// Distinct counts over the horizon ending with the window starting at `window_start`, that
    /// window's own aggregate `agg` included.
    pub fn counts(&self, window_start: i64, bucket_s: i64, agg: &WindowAggregate) -> HorizonCounts {
        let now = window_start.div_euclid(bucket_s.max(1));
        let (mut ports, mut denied_ports, mut denied_hosts) = (
            agg.dst_ports.clone(),
            agg.denied_ports.clone(),
            agg.denied_hosts.clone(),
        );
        for b in self
            .buckets
            .iter()
            .filter(|b| b.index <= now && b.index > now - BUCKETS as i64)
        {
            ports.merge(&b.ports);
            denied_ports.merge(&b.denied_ports);
            denied_hosts.merge(&b.denied_hosts);
        }
        HorizonCounts {
            ports: ports.count(),
            denied_ports: denied_ports.count(),
            denied_hosts: denied_hosts.count(),
        }
    }

    /// Whether the horizon ending with the window at `window_start` holds nothing worth tracking:
    /// no denied destination and fewer than [`PORTS_TO_TRACK`] ports.
    pub fn is_quiet(&self, window_start: i64, bucket_s: i64) -> bool {
        let c = self.counts(window_start, bucket_s, &WindowAggregate::default());
        c.denied_ports == 0 && c.denied_hosts == 0 && c.ports < PORTS_TO_TRACK
    }

    /// Heap bytes held (the struct itself is boxed by its owner).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .buckets
                .iter()
                .map(|b| {
                    b.ports.heap_bytes() + b.denied_ports.heap_bytes() + b.denied_hosts.heap_bytes()
                })
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(ports: std::ops::Range<u64>, denied: bool) -> WindowAggregate {
        let mut a = WindowAggregate::default();
        for p in ports {
            a.dst_ports.insert(p);
            if denied {
                a.denied_ports.insert(p);
                a.denied_out += 1;
            }
        }
        a.denied_hosts.insert(1);
        a
    }

    #[test]
    fn a_few_ports_per_window_add_up_over_the_horizon_and_age_out() {
        let mut h = ScanHorizon::default();
        let (len, bucket) = (300, 3600 * 6 / BUCKETS as i64);
        for w in 0..72 {
            let ports = (w * 3) as u64..(w * 3 + 3) as u64;
            h.record(w * len, bucket, &window(ports, true));
        }
        let c = h.counts(72 * len, bucket, &WindowAggregate::default());
        // At least three quarters of six hours (54 windows of 3 new ports each) are covered.
        assert!(c.denied_ports >= 150, "{c:?}");
        assert!(c.denied_ports <= 230, "{c:?}");
        assert_eq!(c.denied_hosts, 1);
        assert!(!h.is_quiet(72 * len, bucket));
        assert!(h.is_quiet(72 * len + 7 * 3600, bucket));
        let later = h.counts(72 * len + 7 * 3600, bucket, &WindowAggregate::default());
        assert_eq!(
            later.denied_ports, 0,
            "buckets older than the horizon do not count"
        );
    }

    #[test]
    fn repeated_ports_count_once() {
        let mut h = ScanHorizon::default();
        for w in 0..50 {
            h.record(w * 300, 5400, &window(0..5, true));
        }
        let c = h.counts(50 * 300, 5400, &window(0..5, true));
        assert_eq!((c.ports, c.denied_ports), (5, 5));
    }
}
