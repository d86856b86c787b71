//! [`ClusterState`]: what the whole cluster does, for detectors that judge a workload against
//! everyone else: how many workload groups use a destination or a port (rarity, beaconing), how many
//! groups are active, and MIDAS-R's decayed edge totals (edge bursts).
//!
//! Updated once per closed window, after every workload of that window was scored, so scores never
//! depend on the order workloads are visited in. Every table is capped (invariant 5).

use crate::baseline::sketch::{mix64, CountMinSketch};
use crate::flow::keyed_table::KeyedTable;
use crate::flow::WorkloadId;
use crate::window::WindowAggregate;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Distinct source groups tracked exactly per destination; more count as "many".
pub const SHARERS_CAP: usize = 6;
/// Most destinations / ports remembered under a small budget ([`table_cap`]'s floor).
pub const TABLE_CAP: usize = 200_000;
/// A derived cap gives the destination table this fraction of `limits.state_memory`.
const TABLE_SHARE: f64 = 1.0 / 64.0;

/// Bytes one destination may take at worst: its table slot and entry with room to double, and its
/// sharers spilled to the heap.
pub fn destination_bytes() -> usize {
    KeyedTable::<u64, Sharers>::worst_entry_bytes() + SHARERS_CAP * 8
}

/// Destinations (and ports) the cluster tables hold under a budget of `state_memory` bytes: a
/// sixty-fourth of it at [`destination_bytes`] each, and [`TABLE_CAP`] at least (about 1.6 million
/// at 16 GiB; 512 MiB stays at the floor). A fixed cap below a large cluster's destinations made
/// every window forget most of them (a window of a million destinations was cut to 100k) and insert
/// them again the next: rarity judged on what was left, and at a million workloads the re-inserting,
/// pruning and regrowing was the largest per-record cost that a thousand workloads do not pay.
pub fn table_cap(state_memory: usize) -> usize {
    ((state_memory as f64 * TABLE_SHARE) as usize / destination_bytes()).max(TABLE_CAP)
}

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
    /// Source groups per destination group. A [`KeyedTable`], so folding a window of a million
    /// destinations in can ask for each entry a few edges ahead (a `HashMap` missed the cache
    /// twice per edge there: a sixth of closing the window).
    #[serde(with = "by_key")]
    pub dest_sharers: KeyedTable<u64, Sharers>,
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
            dest_sharers: KeyedTable::default(),
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
    /// in cache (a pass over 100k aggregates' peers here missed the cache at every one). A table
    /// past `cap` entries ([`table_cap`]) keeps its newest half.
    pub fn update(
        &mut self,
        window: i64,
        senders: usize,
        edges: &[EgressEdge],
        edge_decay: f64,
        cap: usize,
    ) {
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
        for (i, e) in edges.iter().enumerate() {
            // Destinations are scattered over the table: ask for the index slot of the edge
            // EDGES_AHEAD on, and for the entry of the one half as far on, whose slot is there
            // (only edges of senders touch the table).
            if let Some(ahead) = edges.get(i + EDGES_AHEAD).filter(|a| a.sends) {
                self.dest_sharers.prefetch_index(&ahead.peer_group.0);
            }
            if let Some(ahead) = edges.get(i + EDGES_AHEAD / 2).filter(|a| a.sends) {
                self.dest_sharers.prefetch_entry(&ahead.peer_group.0);
            }
            if e.sends {
                // A group id is its own index key: never refused as a collision.
                if let Some(s) = self
                    .dest_sharers
                    .get_or_insert_with(e.peer_group.0, Sharers::default)
                {
                    s.add(e.group.0, window);
                }
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
        if self.dest_sharers.len() > cap {
            let (cut_window, cut_key) = prune_cut(self.dest_sharers.iter(), cap);
            // The room stays: a cluster over the cap fills the table again within a window.
            self.dest_sharers
                .retain_keeping_room(|k, s| keeps(s, *k, cut_window, cut_key));
        }
        if self.port_sharers.len() > cap {
            let (cut_window, cut_key) = prune_cut(self.port_sharers.iter(), cap);
            self.port_sharers
                .retain(|k, s| keeps(s, *k, cut_window, cut_key));
            // A window of a million ports must not leave a table of that size behind.
            crate::limits::shrink_if_sparse(&mut self.port_sharers);
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
        // The destination table gives its room back itself when mostly emptied.
        crate::limits::shrink_if_sparse(&mut self.port_sharers);
        before - self.dest_sharers.len() - self.port_sharers.len()
    }
}

/// Where pruning a table over its cap cuts, to keep the most recently used half of the cap: the
/// newest entries, and among entries last used in the same window the lowest keys (whatever the
/// table's order, so a restored daemon keeps the same ones). Cutting at a window alone emptied the
/// table whenever over half of it was used in the newest window: past 200k destinations a window,
/// the cluster forgot every destination at every close. Returns the last (window, key) kept.
fn prune_cut<'a, K: Copy + Ord + 'a>(
    entries: impl Iterator<Item = (&'a K, &'a Sharers)>,
    cap: usize,
) -> (i64, Option<K>) {
    let mut order: Vec<(i64, K)> = entries.map(|(k, s)| (s.last_window, *k)).collect();
    let keep = (cap / 2).min(order.len());
    if keep == 0 {
        return (i64::MAX, None);
    }
    let newest_first = |a: &(i64, K), b: &(i64, K)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
    let (w, k) = *order.select_nth_unstable_by(keep - 1, newest_first).1;
    (w, Some(k))
}

/// Whether pruning at `(cut_window, cut_key)` (see [`prune_cut`]) keeps entry `s` of key `k`.
fn keeps<K: Ord>(s: &Sharers, k: K, cut_window: i64, cut_key: Option<K>) -> bool {
    s.last_window > cut_window || (s.last_window == cut_window && cut_key.is_some_and(|c| k <= c))
}

/// Edges ahead of the one being folded in whose destination is asked for.
const EDGES_AHEAD: usize = 8;

/// (De)serialises the destination table as the map it was before it became a [`KeyedTable`]
/// (snapshots stay readable both ways), sorted by key so equal states give equal bytes.
mod by_key {
    use super::*;

    pub fn serialize<S: Serializer>(t: &KeyedTable<u64, Sharers>, s: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<(&u64, &Sharers)> = t.iter().collect();
        entries.sort_unstable_by_key(|(k, _)| **k);
        s.collect_map(entries)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<KeyedTable<u64, Sharers>, D::Error> {
        Ok(std::collections::BTreeMap::<u64, Sharers>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_half_even_when_all_are_equally_new() {
        let mut c = ClusterState::default();
        let mut use_dest = |k: u64, w: i64| {
            c.dest_sharers
                .get_or_insert_with(k, Sharers::default)
                .expect("a group id never collides")
                .add(1, w)
        };
        for k in 0..10u64 {
            use_dest(k, 5);
        }
        use_dest(10, 7);
        use_dest(11, 3);
        let (cut_window, cut_key) = prune_cut(c.dest_sharers.iter(), 12);
        c.dest_sharers
            .retain(|k, s| keeps(s, *k, cut_window, cut_key));
        let mut kept: Vec<u64> = c.dest_sharers.iter().map(|(k, _)| *k).collect();
        kept.sort_unstable();
        assert_eq!(
            kept,
            vec![0, 1, 2, 3, 4, 10],
            "the newest, then the lowest keys of the tie"
        );
        let (cut_window, cut_key) = prune_cut(c.dest_sharers.iter(), 1);
        c.dest_sharers
            .retain(|k, s| keeps(s, *k, cut_window, cut_key));
        assert!(c.dest_sharers.is_empty(), "a cap of one keeps nothing");
    }

    #[test]
    fn a_window_of_destinations_over_the_cap_is_cut_to_half_the_cap() {
        let mut c = ClusterState::default();
        let edges: Vec<EgressEdge> = (1..=(TABLE_CAP as u64 + 10))
            .map(|d| EgressEdge {
                group: WorkloadId(1),
                peer_group: WorkloadId(d),
                port: 443,
                proto: 6,
                count: 1.0,
                sends: true,
                learn: true,
            })
            .collect();
        c.update(0, 1, &edges, 0.5, TABLE_CAP);
        assert_eq!(c.dest_sharers.len(), TABLE_CAP / 2);
        assert_eq!(
            c.dest_others(WorkloadId(1), WorkloadId(2)),
            1,
            "lowest keys kept"
        );
        assert_eq!(
            c.dest_others(WorkloadId(TABLE_CAP as u64), WorkloadId(2)),
            0
        );
    }

    #[test]
    fn a_snapshot_reads_back_the_same_and_as_the_map_it_was() {
        let mut c = ClusterState::default();
        for d in [9u64, 3, 7] {
            c.dest_sharers
                .get_or_insert_with(d, Sharers::default)
                .expect("inserts")
                .add(d + 1, 4);
        }
        let bytes = bincode::serialize(&c).expect("serialises");
        let back: ClusterState = bincode::deserialize(&bytes).expect("reads back");
        assert!(back == c);
        // The same bytes as a `HashMap` of destinations, which older snapshots hold.
        #[derive(Serialize, Deserialize)]
        struct Before {
            dest_sharers: std::collections::HashMap<u64, Sharers>,
        }
        let old = Before {
            dest_sharers: c
                .dest_sharers
                .iter()
                .map(|(k, s)| (*k, s.clone()))
                .collect(),
        };
        let old_bytes = bincode::serialize(&old).expect("serialises");
        #[derive(Deserialize)]
        struct After {
            #[serde(with = "by_key")]
            dest_sharers: KeyedTable<u64, Sharers>,
        }
        let read: After = bincode::deserialize(&old_bytes).expect("reads an old table");
        assert!(read.dest_sharers == c.dest_sharers);
    }

    #[test]
    fn destinations_and_ports_idle_past_the_horizon_expire() {
        let mut c = ClusterState::default();
        for (d, w) in [(1u64, 10), (2, 50)] {
            c.dest_sharers
                .get_or_insert_with(d, Sharers::default)
                .expect("inserts")
                .add(7, w);
        }
        c.port_sharers
            .entry(port_key(22, 6))
            .or_default()
            .add(7, 10);
        assert_eq!(c.expire(20), 2);
        assert!(c.dest_sharers.contains_key(&2) && !c.dest_sharers.contains_key(&1));
        assert!(c.port_sharers.is_empty());
    }

    #[test]
    fn the_table_cap_grows_with_the_budget_from_a_floor() {
        assert_eq!(
            table_cap(512 << 20),
            TABLE_CAP,
            "the default budget stays at the floor"
        );
        let large = table_cap(16 << 30);
        assert!(
            large > 1_000_000 && large < 4_000_000,
            "16 GiB holds a million workloads' destinations: {large}"
        );
        assert!(large * destination_bytes() <= (16usize << 30) / 64);
    }
}
