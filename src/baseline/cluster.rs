//! [`ClusterState`]: what the whole cluster does, for detectors that judge a workload against
//! everyone else: how many workload groups use a destination or a port (rarity, beaconing), how many
//! groups are active, and MIDAS-R's decayed edge totals (edge bursts).
//!
//! Updated once per closed window, after every workload of that window was scored, so scores never
//! depend on the order workloads are visited in. Every table is capped (invariant 5).

use crate::baseline::sketch::{mix64, CountMinSketch};
use crate::flow::WorkloadId;
use crate::window::WindowAggregate;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// Distinct source groups tracked exactly per destination; more count as "many".
pub const SHARERS_CAP: usize = 6;
/// Most destinations / ports remembered.
pub const TABLE_CAP: usize = 200_000;

/// Which source groups use something (capped).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sharers {
    /// Distinct source groups (up to [`SHARERS_CAP`]). The first two inline: most destinations
    /// have one or two users, and a heap block per destination was a third of folding a window of
    /// a million destinations into the cluster state. Serialised as a sequence, as a `Vec` was.
    pub groups: smallvec::SmallVec<[u64; 2]>,
    /// Last window it was used.
    pub last_window: i64,
}

/// One egress peer of a closed window's aggregate, as [`ClusterState::update`] folds it in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EgressEdge {
    /// The workload's group.
    pub group: WorkloadId,
    /// The peer's group.
    pub peer_group: WorkloadId,
    /// Destination port.
    pub port: u16,
    /// IP protocol.
    pub proto: u8,
    /// Records or connections on the edge, whichever is larger.
    pub count: f64,
    /// The workload sent records this window, so it shares the destination and the port.
    pub sends: bool,
    /// The workload's window was not anomalous, so the edge's count is learned.
    pub learn: bool,
}

impl EgressEdge {
    /// Appends the egress peers of one closed aggregate.
    pub fn collect(agg: &WindowAggregate, anomalous: bool, out: &mut Vec<EgressEdge>) {
        let sends = agg.records_out > 0;
        out.extend(agg.peers.iter().filter(|p| p.egress).map(|p| EgressEdge {
            group: agg.group,
            peer_group: p.peer_group,
            port: p.port,
            proto: p.proto,
            count: (p.records as u64).max(p.connections) as f64,
            sends,
            learn: !anomalous,
        }));
    }
}

impl Sharers {
    fn add(&mut self, g: u64, w: i64) {
        self.last_window = self.last_window.max(w);
        if self.groups.len() < SHARERS_CAP && !self.groups.contains(&g) {
            self.groups.push(g);
        }
    }
    /// Distinct groups (saturates at [`SHARERS_CAP`]).
    pub fn count(&self) -> usize {
        self.groups.len()
    }
    /// Distinct groups other than `g`.
    pub fn others(&self, g: u64) -> usize {
        self.groups.iter().filter(|&&x| x != g).count()
    }
}

/// `[detect.edge_burst]` sketch size lives with the detector; this keeps the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Source groups per destination group.
    pub dest_sharers: FxHashMap<u64, Sharers>,
    /// Source groups per (port, proto).
    pub port_sharers: FxHashMap<u32, Sharers>,
    /// Groups seen in recent windows (decayed count).
    pub active_groups: f64,
    /// MIDAS-R decayed edge totals.
    pub edge_totals: CountMinSketch,
    /// Windows folded into `edge_totals`.
    pub edge_ticks: u64,
    /// Decayed number of windows (the denominator of the decayed mean).
    pub edge_weight: f64,
    /// Slowly decayed edge totals (about a day of 5-minute windows), so a daily ramp-up is compared
    /// with the day's usual level rather than with last night's.
    pub edge_slow: CountMinSketch,
    /// Denominator of the slow mean.
    pub edge_slow_weight: f64,
    /// Decayed peak count per edge, anomalous windows included: a burst the edge had recently (the
    /// nightly job's, yesterday) is not a surprise when it comes back. Fades by [`PEAK_EDGE_DECAY`]
    /// per window.
    #[serde(default = "peak_sketch")]
    pub edge_peak: CountMinSketch,
    /// Last window folded in.
    pub last_window: i64,
}

impl Default for ClusterState {
    fn default() -> Self {
        ClusterState {
            dest_sharers: FxHashMap::default(),
            port_sharers: FxHashMap::default(),
            active_groups: 0.0,
            edge_totals: CountMinSketch::new(4, 4096),
            edge_ticks: 0,
            edge_weight: 0.0,
            edge_slow: CountMinSketch::new(4, 4096),
            edge_slow_weight: 0.0,
            edge_peak: peak_sketch(),
            last_window: i64::MIN,
        }
    }
}

/// Per-window decay of the slow edge mean.
pub const SLOW_EDGE_DECAY: f64 = 0.995;
/// Per-window fading of edge peaks (about 13 % per day of 5-minute windows, so yesterday's nightly
/// burst is still remembered tonight).
pub const PEAK_EDGE_DECAY: f64 = 0.9995;

fn peak_sketch() -> CountMinSketch {
    CountMinSketch::new(4, 4096)
}

/// Key of an edge between two groups for the count-min sketch.
#[inline]
pub fn edge_key(src_group: WorkloadId, dst_group: WorkloadId, port: u16) -> u64 {
    mix64(src_group.0 ^ dst_group.0.rotate_left(21) ^ ((port as u64) << 7))
}

/// Key of a (port, proto).
#[inline]
pub fn port_key(port: u16, proto: u8) -> u32 {
    port as u32 | ((proto as u32) << 16)
}

impl ClusterState {
    /// How many source groups other than `src` reached the destination group.
    pub fn dest_others(&self, dst_group: WorkloadId, src: WorkloadId) -> usize {
        self.dest_sharers
            .get(&dst_group.0)
            .map_or(0, |s| s.others(src.0))
    }

    /// How many source groups other than `src` used the port.
    pub fn port_others(&self, port: u16, proto: u8, src: WorkloadId) -> usize {
        self.port_sharers
            .get(&port_key(port, proto))
            .map_or(0, |s| s.others(src.0))
    }

    /// The edge's recent (decayed) peak count per window.
    pub fn edge_peak(&self, key: u64) -> f64 {
        self.edge_peak.estimate(key)
    }

    /// Chi-squared score of an edge count `a` this window against the edge's decayed mean per window
    /// (MIDAS-R's statistic with its decayed totals), and that mean. 0 until history exists.
    pub fn edge_score(&self, key: u64, a: f64) -> (f64, f64) {
        if self.edge_weight <= 0.0 {
            return (0.0, 0.0);
        }
        let fast = self.edge_totals.estimate(key) / self.edge_weight;
        let slow = if self.edge_slow_weight > 0.0 {
            self.edge_slow.estimate(key) / self.edge_slow_weight
        } else {
            0.0
        };
        let expected = fast.max(slow);
        let score = (a - expected).powi(2) / expected.max(1.0);
        (score, expected)
    }

    /// Folds one closed window in: sharers, active groups, and (MIDAS-F) the edge counts of workloads
    /// whose window was not anomalous. `senders` counts the window's workloads that sent records;
    /// `edges` are their egress peers, copied out by [`EgressEdge::collect`] while each aggregate was
    /// in cache (a pass over 100k aggregates' peers here missed the cache at every one).
    pub fn update(&mut self, window: i64, senders: usize, edges: &[EgressEdge], edge_decay: f64) {
        let gap = if self.last_window == i64::MIN {
            1
        } else {
            (window - self.last_window).max(1)
        };
        // Decay first, then fold the window's edges in.
        let factor = edge_decay.powi(gap.min(64) as i32);
        self.edge_totals.scale(factor);
        self.edge_weight = self.edge_weight * factor + 1.0;
        let slow_factor = SLOW_EDGE_DECAY.powi(gap.min(4096) as i32);
        self.edge_slow.scale(slow_factor);
        self.edge_slow_weight = self.edge_slow_weight * slow_factor + 1.0;
        self.edge_peak
            .scale(PEAK_EDGE_DECAY.powi(gap.min(100_000) as i32));
        for e in edges {
            if e.sends {
                self.dest_sharers
                    .entry(e.peer_group.0)
                    .or_default()
                    .add(e.group.0, window);
                self.port_sharers
                    .entry(port_key(e.port, e.proto))
                    .or_default()
                    .add(e.group.0, window);
            }
            let key = edge_key(e.group, e.peer_group, e.port);
            self.edge_peak.raise(key, e.count);
            if e.learn {
                self.edge_totals.add(key, e.count);
                self.edge_slow.add(key, e.count);
            }
        }
        let decay = 0.98f64.powi(gap.min(1000) as i32);
        self.active_groups = self.active_groups * decay + senders as f64 * (1.0 - decay);
        if self.active_groups < senders as f64 {
            self.active_groups = self.active_groups.max(senders as f64 * 0.5);
        }
        self.edge_ticks += 1;
        self.last_window = window;
        if self.dest_sharers.len() > TABLE_CAP {
            prune(&mut self.dest_sharers, TABLE_CAP);
        }
        if self.port_sharers.len() > TABLE_CAP {
            prune(&mut self.port_sharers, TABLE_CAP);
        }
    }
}

impl ClusterState {
    /// Forgets destinations and ports no group used since `horizon_window` (`baseline.expire_after`,
    /// like the baselines): a port scan otherwise leaves a thousand one-user ports behind for good.
    /// Tables mostly emptied give their memory back. Returns how many entries went.
    pub fn expire(&mut self, horizon_window: i64) -> usize {
        let before = self.dest_sharers.len() + self.port_sharers.len();
        self.dest_sharers
            .retain(|_, s| s.last_window >= horizon_window);
        self.port_sharers
            .retain(|_, s| s.last_window >= horizon_window);
        crate::limits::shrink_if_sparse(&mut self.dest_sharers);
        crate::limits::shrink_if_sparse(&mut self.port_sharers);
        before - self.dest_sharers.len() - self.port_sharers.len()
    }
}

/// Cuts a table over its cap back to the most recently used half of the cap; among entries last
/// used in the same window, the lowest keys (whatever the table's order, so a restored daemon
/// keeps the same ones). Cutting at a window alone emptied the table whenever over half of it was
/// used in the newest window: past 200k destinations a window, the cluster forgot every destination
/// at every close.
fn prune<K: Copy + Eq + std::hash::Hash + Ord>(t: &mut FxHashMap<K, Sharers>, cap: usize) {
    let keep = (cap / 2).min(t.len());
    if keep == 0 {
        t.clear();
        return;
    }
    let mut order: Vec<(i64, K)> = t.iter().map(|(k, s)| (s.last_window, *k)).collect();
    let newest_first = |a: &(i64, K), b: &(i64, K)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
    let (cut_window, cut_key) = *order.select_nth_unstable_by(keep - 1, newest_first).1;
    t.retain(|k, s| s.last_window > cut_window || (s.last_window == cut_window && *k <= cut_key));
    // A window of a million destinations must not leave a table of that size behind.
    crate::limits::shrink_if_sparse(t);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_half_even_when_all_are_equally_new() {
        let mut t: FxHashMap<u64, Sharers> = FxHashMap::default();
        for k in 0..10u64 {
            t.entry(k).or_default().add(1, 5);
        }
        t.entry(10).or_default().add(1, 7);
        t.entry(11).or_default().add(1, 3);
        prune(&mut t, 12);
        let mut kept: Vec<u64> = t.keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(
            kept,
            vec![0, 1, 2, 3, 4, 10],
            "the newest, then the lowest keys of the tie"
        );
    }

    #[test]
    fn destinations_and_ports_idle_past_the_horizon_expire() {
        let mut c = ClusterState::default();
        c.dest_sharers.entry(1).or_default().add(7, 10);
        c.dest_sharers.entry(2).or_default().add(7, 50);
        c.port_sharers
            .entry(port_key(22, 6))
            .or_default()
            .add(7, 10);
        assert_eq!(c.expire(20), 2);
        assert!(c.dest_sharers.contains_key(&2) && !c.dest_sharers.contains_key(&1));
        assert!(c.port_sharers.is_empty());
    }
}
