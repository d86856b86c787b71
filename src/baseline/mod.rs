//! Per-workload baselines: what each workload normally does, learned online from closed windows.
//!
//! This module owns the statistics (decayed mean and variance per feature, an optional hour-of-week
//! profile), the memory of known peers (capped, then summarised in a bitmap), the short history of
//! external edges the beaconing detector reads, the concurrent store (`dashmap`), idle expiry, and the
//! cluster-wide popularity tables. It must not decide what is anomalous (detectors do).
//!
//! Baselines are keyed by workload *group* (the workload with its replica-set hash removed), so a
//! rollout does not start a workload's history from zero. A window judged anomalous is folded in at
//! `anomalous_weight` so an attack does not become the new normal (invariant 4).

pub mod cluster;
pub mod daily;
pub mod history_index;
pub mod horizon;
pub mod sketch;

pub use cluster::ClusterState;

use crate::flow::WorkloadId;
use crate::window::aggregate::PeerStat;
use crate::window::WindowAggregate;
use dashmap::DashMap;
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The features every baseline tracks, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Feature {
    /// Bytes sent as initiator.
    BytesOut = 0,
    /// Bytes received as destination.
    BytesIn,
    /// Packets sent as initiator.
    PacketsOut,
    /// Packets received as destination.
    PacketsIn,
    /// Connections started.
    ConnsOut,
    /// Connections received.
    ConnsIn,
    /// Denied flows as source.
    DeniedOut,
    /// Distinct destination ports.
    DstPorts,
    /// Distinct destination hosts.
    DstHosts,
    /// Bytes to public networks.
    BytesToPublic,
    /// Distinct sources reaching the workload.
    SrcHosts,
}

/// Number of [`Feature`]s.
pub const NUM_FEATURES: usize = 11;

impl Feature {
    /// All features in index order.
    pub const ALL: [Feature; NUM_FEATURES] = [
        Feature::BytesOut,
        Feature::BytesIn,
        Feature::PacketsOut,
        Feature::PacketsIn,
        Feature::ConnsOut,
        Feature::ConnsIn,
        Feature::DeniedOut,
        Feature::DstPorts,
        Feature::DstHosts,
        Feature::BytesToPublic,
        Feature::SrcHosts,
    ];

    /// Name in alerts and config.
    pub fn name(self) -> &'static str {
        match self {
            Feature::BytesOut => "bytes_out",
            Feature::BytesIn => "bytes_in",
            Feature::PacketsOut => "packets_out",
            Feature::PacketsIn => "packets_in",
            Feature::ConnsOut => "connections_out",
            Feature::ConnsIn => "connections_in",
            Feature::DeniedOut => "denied_out",
            Feature::DstPorts => "distinct_dest_ports",
            Feature::DstHosts => "distinct_dest_hosts",
            Feature::BytesToPublic => "bytes_to_public",
            Feature::SrcHosts => "distinct_sources",
        }
    }

    /// Whether the feature describes what the workload receives (ingress).
    pub fn is_ingress(self) -> bool {
        matches!(
            self,
            Feature::BytesIn | Feature::PacketsIn | Feature::ConnsIn | Feature::SrcHosts
        )
    }

    /// The feature's value in a window.
    pub fn value(self, a: &WindowAggregate) -> f64 {
        (match self {
            Feature::BytesOut => a.bytes_out,
            Feature::BytesIn => a.bytes_in,
            Feature::PacketsOut => a.packets_out,
            Feature::PacketsIn => a.packets_in,
            Feature::ConnsOut => a.conns_out,
            Feature::ConnsIn => a.conns_in,
            Feature::DeniedOut => a.denied_out,
            Feature::DstPorts => a.dst_ports.count(),
            Feature::DstHosts => a.dst_hosts.count(),
            Feature::BytesToPublic => a.bytes_to_public,
            Feature::SrcHosts => a.src_hosts.count(),
        }) as f64
    }
}

/// Exponentially weighted mean and variance (f32: a baseline is kept for every workload).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Ewm {
    /// Mean.
    pub mean: f32,
    /// Variance.
    pub var: f32,
}

impl Ewm {
    /// Folds `x` in with weight `alpha` (West's incremental form).
    pub fn update(&mut self, x: f64, alpha: f64) {
        let mean = self.mean as f64;
        let diff = x - mean;
        let incr = alpha * diff;
        let new_mean = mean + incr;
        let new_var = (1.0 - alpha) * (self.var as f64 + diff * incr);
        self.mean = new_mean as f32;
        self.var = new_var.max(0.0) as f32;
    }
    /// Standard deviation.
    pub fn sd(&self) -> f64 {
        (self.var as f64).sqrt()
    }
}

/// Most (peer, port) pairs remembered exactly; beyond this they go into the summary bitmap.
pub const KNOWN_PEERS_CAP: usize = 48;
const SUMMARY_BITS: usize = 512;
/// External edges tracked for beaconing.
pub const EDGE_CAP: usize = 12;

/// Recent presence of one edge to an external destination, for periodicity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EdgeHistory {
    /// Peer group.
    pub peer: WorkloadId,
    /// Destination port.
    pub port: u16,
    /// Protocol.
    pub proto: u8,
    /// Bit i set: the edge was active in window `last_window - i`.
    pub mask: u64,
    /// Last window the edge was active.
    pub last_window: i64,
    /// Whether it appeared after the workload's warm-up.
    pub new_after_warmup: bool,
    /// First window the edge was active (0 in snapshots written before this field existed).
    #[serde(default)]
    pub first_window: i64,
    /// Mean bytes per active window.
    pub bytes: Ewm,
}

impl EdgeHistory {
    /// Presence mask aligned to window `w` (bit 0 = window `w`).
    pub fn mask_at(&self, w: i64) -> u64 {
        let shift = w - self.last_window;
        if shift <= 0 {
            self.mask
        } else if shift >= 64 {
            0
        } else {
            self.mask << shift
        }
    }
}

/// History of one workload group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Windows of history folded in.
    pub windows_seen: u64,
    /// Last window folded in.
    pub last_window: i64,
    /// Per-feature decayed statistics, indexed by [`Feature`].
    pub features: [Ewm; NUM_FEATURES],
    /// Optional hour-of-week mean of bytes out and connections out.
    pub hour_of_week: Option<Box<HourProfile>>,
    /// Known (peer group, port) hashes, exact up to [`KNOWN_PEERS_CAP`].
    pub known_peers: Vec<u64>,
    /// Summary bitmap for known peers beyond the cap (false positives possible, no false negatives).
    pub known_summary: Option<Box<[u64]>>,
    /// Recent external edges.
    pub edges: Vec<EdgeHistory>,
    /// Peaks per hour of day, once the workload had a peak (see [`daily`]).
    #[serde(default)]
    pub daily: Option<Box<daily::DailyPeaks>>,
    /// Distinct destinations over the long horizon, once the workload probed (see [`horizon`]).
    #[serde(default)]
    pub horizon: Option<Box<horizon::ScanHorizon>>,
}

/// Mean bytes-out and connections-out per hour of the week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HourProfile {
    /// Bytes out per hour of week.
    pub bytes_out: Vec<Ewm>,
    /// Connections out per hour of week.
    pub conns_out: Vec<Ewm>,
}

/// Key of a (peer, port, direction) in the known-peer memory.
pub fn peer_key(p: &PeerStat) -> u64 {
    sketch::mix64(
        p.peer_group.0
            ^ ((p.port as u64) << 48)
            ^ ((p.proto as u64) << 40)
            ^ ((p.egress as u64) << 39),
    )
}

impl Baseline {
    /// Whether a (peer, port) key has been seen.
    pub fn knows(&self, key: u64) -> bool {
        if self.known_peers.contains(&key) {
            return true;
        }
        match &self.known_summary {
            Some(bits) => {
                let b = (key % SUMMARY_BITS as u64) as usize;
                bits[b / 64] & (1 << (b % 64)) != 0
            }
            None => false,
        }
    }

    fn remember(&mut self, key: u64) {
        if self.knows(key) {
            return;
        }
        if self.known_peers.len() < KNOWN_PEERS_CAP {
            self.known_peers.push(key);
            return;
        }
        let bits = self
            .known_summary
            .get_or_insert_with(|| vec![0u64; SUMMARY_BITS / 64].into_boxed_slice());
        let b = (key % SUMMARY_BITS as u64) as usize;
        bits[b / 64] |= 1 << (b % 64);
    }

    /// Edge history of (peer, port, proto), if tracked.
    pub fn edge(&self, peer: WorkloadId, port: u16, proto: u8) -> Option<&EdgeHistory> {
        self.edges
            .iter()
            .find(|e| e.peer == peer && e.port == port && e.proto == proto)
    }

    /// Mean of a feature.
    pub fn mean(&self, f: Feature) -> f64 {
        self.features[f as usize].mean as f64
    }

    /// Standard deviation of a feature.
    pub fn sd(&self, f: Feature) -> f64 {
        self.features[f as usize].sd()
    }

    /// Mean and standard deviation of a feature at `epoch_s`, raised to the workload's usual peak at
    /// that hour of day when it has one (a recurring nightly job is not a surprise the next night).
    pub fn usual(&self, f: Feature, epoch_s: i64) -> (f64, f64) {
        let (mean, sd) = (self.mean(f), self.sd(f));
        match &self.daily {
            Some(d) => {
                let peak = d.peak(f, epoch_s);
                (mean.max(peak), sd.max(0.5 * peak))
            }
            None => (mean, sd),
        }
    }

    /// Approximate memory held.
    pub fn heap_bytes(&self) -> usize {
        self.known_peers.capacity() * 8
            + self.known_summary.as_ref().map_or(0, |b| b.len() * 8)
            + self.edges.capacity() * std::mem::size_of::<EdgeHistory>()
            + self.hour_of_week.as_ref().map_or(0, |_| 2 * 168 * 8)
            + self
                .daily
                .as_ref()
                .map_or(0, |_| std::mem::size_of::<daily::DailyPeaks>())
            + self.horizon.as_ref().map_or(0, |h| h.heap_bytes())
    }
}

/// `[baseline]` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// Windows of history before statistical detectors may alert on a workload.
    pub warmup_windows: u64,
    /// Effective memory of the decayed statistics, in windows (alpha = 1/memory once warm).
    pub memory_windows: u64,
    /// Weight (0-1) at which a window judged anomalous updates the baseline.
    pub anomalous_weight: f64,
    /// Keep an hour-of-week profile of bytes and connections out (168 buckets per workload).
    pub hour_of_week: bool,
    /// Forget a workload after this long without traffic (event time).
    pub expire_after: String,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            warmup_windows: 12,
            memory_windows: 96,
            anomalous_weight: 0.1,
            hour_of_week: false,
            expire_after: "7d".into(),
        }
    }
}

impl BaselineConfig {
    /// Checks values; errors name the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.memory_windows < 2 {
            return Err((
                "baseline.memory_windows".into(),
                "must be at least 2".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.anomalous_weight) {
            return Err((
                "baseline.anomalous_weight".into(),
                "must be between 0 and 1".into(),
            ));
        }
        crate::window::parse_duration_s(&self.expire_after)
            .map_err(|m| ("baseline.expire_after".to_string(), m))?;
        Ok(())
    }
}

/// Bytes assumed for one long-horizon counter set: the struct plus a few exact counters; a real
/// scanner's HyperLogLogs take up to 6 KiB, but only a handful of workloads scan.
pub const HORIZON_ESTIMATE: usize = 1536;

/// All baselines, keyed by workload group.
#[derive(Debug)]
pub struct BaselineStore {
    /// Hashed with Fx, not the standard library's randomly keyed SipHash: a group id is already an
    /// xxh3 hash of its key, and a fixed hash makes a baseline's slot a function of its group alone,
    /// so a close can visit the groups in slot order ([`BaselineStore::locality`]) and still in the
    /// same order on every run.
    map: DashMap<WorkloadId, Baseline, FxBuildHasher>,
    cfg: BaselineConfig,
    /// Length of one [`horizon`] bucket in seconds (0: no long-horizon counters).
    scan_bucket_s: i64,
    /// Baselines holding a [`horizon::ScanHorizon`].
    horizons: AtomicUsize,
    /// Last sampled bytes per baseline, the store's size then, and estimates since: the budget asks
    /// at every window close, and sampling a thousand baselines each time cost more than closing
    /// the sparse windows of a replayed capture.
    sampled_per_entry: AtomicUsize,
    sampled_at_len: AtomicUsize,
    estimates_since_sample: AtomicUsize,
    /// Windows of history per group up to the admission's threshold, when kept
    /// ([`BaselineStore::keep_admission_history`]).
    history: history_index::HistoryIndex,
}

/// Baselines sampled to estimate the bytes of an average one.
const SAMPLE: usize = 1024;

/// Shards of the store's `DashMap`. More than its default (four per core) so that a close thread
/// holding one group's shard seldom holds the shard a look-up ahead ([`BaselineStore::prefetch`])
/// wants; the locks are a few bytes each.
const SHARDS: usize = 64;

/// Slot bits in [`BaselineStore::locality`]: a shard of 4096 slots (up to 230k baselines over the
/// 64 shards) is walked in one run, a larger one in `slots / 4096` interleaved runs (8 at a
/// million baselines).
const LOCALITY_BITS: u32 = 12;

/// An empty store with the default settings (and the same shards as [`BaselineStore::new`]).
impl Default for BaselineStore {
    fn default() -> Self {
        BaselineStore::new(BaselineConfig::default())
    }
}

impl BaselineStore {
    /// An empty store.
    pub fn new(cfg: BaselineConfig) -> Self {
        BaselineStore {
            map: DashMap::with_hasher_and_shard_amount(FxBuildHasher, SHARDS),
            cfg,
            scan_bucket_s: 0,
            horizons: AtomicUsize::new(0),
            sampled_per_entry: AtomicUsize::new(0),
            sampled_at_len: AtomicUsize::new(0),
            estimates_since_sample: AtomicUsize::new(0),
            history: history_index::HistoryIndex::default(),
        }
    }

    /// Keeps each group's windows of history, up to `established`, in a compact table for the
    /// admission check ([`BaselineStore::admission_history`]; see [`history_index`]).
    pub fn keep_admission_history(&mut self, established: u64) {
        self.history.keep_up_to(established);
        self.sync_history();
    }

    /// Applies the changes to the history table made since the last call (folds, removals,
    /// restores); call before the admission reads it.
    #[inline]
    pub fn sync_history(&mut self) {
        if self.history.is_dirty() {
            let map = &self.map;
            self.history
                .sync(|| map.iter().map(|e| (*e.key(), e.value().windows_seen)));
        }
    }

    /// A group's windows of history for the admission check: exact up to the threshold given to
    /// [`BaselineStore::keep_admission_history`], that threshold past it (0: no baseline). From the
    /// compact table when kept, else from the baselines.
    #[inline]
    pub fn admission_history(&self, group: WorkloadId) -> u64 {
        if !self.history.is_kept() {
            return self.windows_seen(group);
        }
        let seen = self.history.get(group);
        debug_assert!(!self.history.is_dirty(), "history read before a sync");
        debug_assert_eq!(
            seen,
            self.windows_seen(group).min(self.history.cap()),
            "history table out of step with the baselines"
        );
        seen
    }

    /// Starts loading what [`BaselineStore::admission_history`] of `group` reads.
    #[inline]
    pub fn prefetch_admission_history(&self, group: WorkloadId) {
        if self.history.is_kept() {
            self.history.prefetch(group);
        } else {
            self.prefetch(group);
        }
    }

    /// Keeps long-horizon distinct counters over `horizon_s` seconds (0: none).
    pub fn set_scan_horizon(&mut self, horizon_s: i64) {
        self.scan_bucket_s = if horizon_s > 0 {
            (horizon_s / horizon::BUCKETS as i64).max(1)
        } else {
            0
        };
    }

    /// Length of one horizon bucket in seconds (0: no horizon).
    pub fn scan_bucket_s(&self) -> i64 {
        self.scan_bucket_s
    }

    /// Takes new settings, keeping every baseline.
    pub fn reconfigure(&mut self, cfg: BaselineConfig) {
        self.cfg = cfg;
    }

    /// Settings.
    pub fn config(&self) -> &BaselineConfig {
        &self.cfg
    }

    /// A group's baseline.
    pub fn get(
        &self,
        group: WorkloadId,
    ) -> Option<dashmap::mapref::one::Ref<'_, WorkloadId, Baseline>> {
        self.map.get(&group)
    }

    /// The group's slot, for a close that reads the baseline while it scores the group's members
    /// and then folds them in ([`BaselineStore::fold`]) with one lookup. Holds the slot's shard
    /// locked: nothing may look another group up meanwhile on this thread.
    pub fn entry(
        &self,
        group: WorkloadId,
    ) -> dashmap::mapref::entry::Entry<'_, WorkloadId, Baseline> {
        self.map.entry(group)
    }

    /// Folds a closed window into the group's baseline.
    pub fn update(
        &self,
        group: WorkloadId,
        agg: &WindowAggregate,
        window: i64,
        window_start: i64,
        anomalous: bool,
    ) {
        let mut b = self.map.entry(group).or_default();
        self.fold(group, &mut b, agg, window, window_start, anomalous);
    }

    /// Folds one workload's closed window into its group's baseline `b`.
    pub fn fold(
        &self,
        group: WorkloadId,
        b: &mut Baseline,
        agg: &WindowAggregate,
        window: i64,
        window_start: i64,
        anomalous: bool,
    ) {
        let warm = b.windows_seen >= self.cfg.warmup_windows;
        let n = (b.windows_seen + 1) as f64;
        let mut alpha = (1.0 / n).max(1.0 / self.cfg.memory_windows as f64);
        if anomalous && warm {
            alpha *= self.cfg.anomalous_weight;
        }
        let values = Feature::ALL.map(|f| Feature::value(f, agg));
        if warm
            && (b.daily.is_some()
                || Feature::ALL.iter().zip(&values).any(|(f, &x)| {
                    x > daily::PEAK_FACTOR * b.features[*f as usize].mean as f64 + 1.0
                }))
        {
            b.daily
                .get_or_insert_with(|| Box::new(daily::DailyPeaks::new(window_start)))
                .record(window_start, &values, anomalous);
        }
        for f in Feature::ALL {
            b.features[f as usize].update(values[f as usize], alpha);
        }
        if self.cfg.hour_of_week {
            let how = (window_start.div_euclid(3600) + 72).rem_euclid(168) as usize; // epoch is a Thursday
            let prof = b.hour_of_week.get_or_insert_with(|| {
                Box::new(HourProfile {
                    bytes_out: vec![Ewm::default(); 168],
                    conns_out: vec![Ewm::default(); 168],
                })
            });
            prof.bytes_out[how].update(agg.bytes_out as f64, 0.2);
            prof.conns_out[how].update(agg.conns_out as f64, 0.2);
        }
        // Peers of an anomalous window are not learned: the attack's targets must stay "new".
        if !anomalous || !warm {
            for p in &agg.peers {
                let key = peer_key(p);
                b.remember(key);
            }
        }
        for p in agg
            .peers
            .iter()
            // Only public destinations the workload reached (not denied probes of private ranges,
            // which would push its real external edges out of the capped table).
            .filter(|p| {
                p.egress
                    && p.peer_kind == crate::flow::EndpointType::Net
                    && p.peer_public
                    && p.denied < p.records
            })
        {
            let peer = p.peer_group;
            let bytes = p.bytes_out as f64;
            if let Some(e) = b
                .edges
                .iter_mut()
                .find(|e| e.peer == peer && e.port == p.port && e.proto == p.proto)
            {
                if window > e.last_window {
                    e.mask = e.mask_at(window) | 1;
                    e.last_window = window;
                    e.bytes.update(bytes, 0.2);
                }
                continue;
            }
            let entry = EdgeHistory {
                peer,
                port: p.port,
                proto: p.proto,
                mask: 1,
                last_window: window,
                new_after_warmup: warm,
                first_window: window,
                bytes: Ewm {
                    mean: bytes as f32,
                    var: 0.0,
                },
            };
            if b.edges.len() < EDGE_CAP {
                b.edges.push(entry);
            } else if let Some(oldest) = b
                .edges
                .iter_mut()
                .min_by_key(|e| (e.last_window, e.mask.count_ones(), e.peer, e.port))
            {
                if oldest.last_window < window {
                    *oldest = entry;
                }
            }
        }
        if self.scan_bucket_s > 0 {
            let bucket = self.scan_bucket_s;
            if b.horizon.is_some() || horizon::worth_tracking(agg) {
                let h = b.horizon.get_or_insert_with(|| {
                    self.horizons.fetch_add(1, Ordering::Relaxed);
                    Box::default()
                });
                h.record(window_start, bucket, agg);
                // A workload that stopped probing a horizon ago gives its counters back.
                if !horizon::worth_tracking(agg) && h.is_quiet(window_start, bucket) {
                    b.horizon = None;
                    self.horizons.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        b.windows_seen += 1;
        b.last_window = window;
        self.history
            .folded(group, b.windows_seen - 1, b.windows_seen);
    }

    /// Drops groups idle since before `horizon_window`; returns how many. A map mostly emptied
    /// (an identity flood or a scan's one-window peers expiring) gives its memory back.
    pub fn expire(&self, horizon_window: i64) -> usize {
        let removed = self.remove_where(|_, b| b.last_window < horizon_window);
        if removed > 0 && self.map.len() * 4 < self.map.capacity() {
            self.map.shrink_to_fit();
        }
        removed
    }

    /// Removes the groups `drop` picks, keeping the horizon count right; returns how many.
    fn remove_where(&self, drop: impl Fn(&WorkloadId, &Baseline) -> bool) -> usize {
        let (mut removed, mut horizons) = (0usize, 0usize);
        self.map.retain(|k, b| {
            let d = drop(k, b);
            if d {
                removed += 1;
                horizons += usize::from(b.horizon.is_some());
                self.history.removed(*k);
            }
            !d
        });
        if horizons > 0 {
            self.horizons.fetch_sub(horizons, Ordering::Relaxed);
        }
        removed
    }

    /// Evicts up to `n` groups, newest and idlest first: fewest windows of history, then longest
    /// idle, so a group with a longer history goes only after every shorter one. Groups with at
    /// least `spare_from` windows of history are not touched (`u64::MAX`: any may go). Returns how
    /// many went.
    pub fn evict_newest(&self, n: usize, spare_from: u64) -> usize {
        if n == 0 || self.map.is_empty() {
            return 0;
        }
        let mut order: Vec<(u64, i64, WorkloadId)> = self
            .map
            .iter()
            .filter(|e| e.value().windows_seen < spare_from)
            .map(|e| (e.value().windows_seen, e.value().last_window, *e.key()))
            .collect();
        if order.is_empty() {
            return 0;
        }
        let n = n.min(order.len());
        order.select_nth_unstable(n - 1);
        order.truncate(n);
        let victims: rustc_hash::FxHashSet<WorkloadId> =
            order.into_iter().map(|(_, _, g)| g).collect();
        self.remove_where(|k, _| victims.contains(k))
    }

    /// Starts loading the memory a look-up of `group` reads first: hashbrown's control bytes and
    /// bucket where the probe for it starts. Past a few hundred thousand groups every look-up
    /// misses the cache (a sixth of a run at a million workloads, at admission and at close), and a
    /// `DashMap` look-up cannot overlap with the work before it by itself: this lets a loop ask a
    /// few records or groups ahead. A shard held by a writer (a close thread's group) is skipped,
    /// not waited for. The addresses follow hashbrown's layout (buckets below `data_end`, control
    /// bytes from it); were that to change, the prefetch would load the wrong lines, nothing worse.
    #[inline]
    pub fn prefetch(&self, group: WorkloadId) {
        let hash = self.map.hash_usize(&group);
        let shard = &self.map.shards()[self.map.determine_shard(hash)];
        let Some(table) = shard.try_read() else {
            return;
        };
        let pos = hash & (table.buckets() - 1);
        let end = table.data_end().as_ptr();
        crate::flow::id_map::prefetch_line(end.cast::<u8>().wrapping_add(pos));
        crate::flow::id_map::prefetch_at(end.wrapping_sub(pos + 1));
    }

    /// Where the group's baseline sits, coarsely: its shard, then the low [`LOCALITY_BITS`] bits of
    /// the hash its slot is probed from. Groups closed in this order walk each shard's slots front
    /// to back instead of at random (at a million baselines random slots were a miss and a TLB walk
    /// each, the largest cost a close paid over a small cluster's). A shard of `2^LOCALITY_BITS`
    /// slots is walked once; a smaller one, which the caches hold anyway, in several sweeps; a
    /// larger one in a few interleaved runs, each front to back. A function of the group alone
    /// (the hash is fixed), so the order is the same on every run and thread count; only speed
    /// depends on it.
    #[inline]
    pub fn locality(&self, group: WorkloadId) -> u32 {
        let hash = self.map.hash_usize(&group);
        let shard = self.map.determine_shard(hash) as u32;
        // hashbrown's first probe is the hash's low bits masked to the table's size.
        (shard << LOCALITY_BITS) | (hash as u32 & ((1 << LOCALITY_BITS) - 1))
    }

    /// The second stage of [`BaselineStore::prefetch`], once the group's slot has arrived: asks for
    /// the heap blocks the detectors and the fold read behind the slot (the known peers, the
    /// recent external edges, the daily peaks). No look-up can reach them before the slot is read,
    /// so at a million baselines each was a miss of its own after the slot's. A shard held by a
    /// writer is skipped.
    #[inline]
    pub fn prefetch_heap(&self, group: WorkloadId) {
        use crate::flow::id_map::{prefetch, prefetch_line};
        let dashmap::try_result::TryResult::Present(b) = self.map.try_get(&group) else {
            return;
        };
        // The first two lines of known peers: most workloads know a handful.
        let peers = b.known_peers.as_ptr();
        prefetch_line(peers);
        if b.known_peers.len() > 8 {
            prefetch_line(peers.wrapping_add(8));
        }
        if !b.edges.is_empty() {
            prefetch_line(b.edges.as_ptr());
        }
        if let Some(daily) = &b.daily {
            prefetch::<daily::DailyPeaks>(daily);
        }
    }

    /// Whether a group has a baseline, and how many windows of history it has (0 when none).
    pub fn windows_seen(&self, group: WorkloadId) -> u64 {
        self.map.get(&group).map_or(0, |b| b.windows_seen)
    }

    /// Estimated bytes held: map slots and structs for every group, heap from a sample of groups,
    /// long-horizon counters counted apart (they are few and larger).
    pub fn estimated_bytes(&self) -> usize {
        let n = self.map.len();
        if n == 0 {
            return 0;
        }
        // Re-sample every 64 estimates, or sooner when the store grew or shrank by an eighth.
        let at = self.sampled_at_len.load(Ordering::Relaxed);
        let since = self.estimates_since_sample.fetch_add(1, Ordering::Relaxed);
        let mut per_entry = self.sampled_per_entry.load(Ordering::Relaxed);
        if per_entry == 0 || since >= 64 || n.abs_diff(at) > at / 8 {
            let (mut heap, mut sampled) = (0usize, 0usize);
            for e in self.map.iter().take(SAMPLE) {
                let b = e.value();
                heap += b.heap_bytes() - b.horizon.as_ref().map_or(0, |h| h.heap_bytes());
                sampled += 1;
            }
            // Tables double when they grow.
            let slot =
                (std::mem::size_of::<(WorkloadId, Baseline)>() + 1) * crate::limits::SLOT_SLACK;
            // Allocator overhead: about 16 bytes per heap block, a few blocks per baseline.
            per_entry = slot + heap / sampled.max(1) + 48;
            self.sampled_per_entry.store(per_entry, Ordering::Relaxed);
            self.sampled_at_len.store(n, Ordering::Relaxed);
            self.estimates_since_sample.store(0, Ordering::Relaxed);
        }
        n * per_entry
            + self.horizons.load(Ordering::Relaxed) * HORIZON_ESTIMATE
            + self.history.table_bytes()
    }

    /// Baselines holding long-horizon counters.
    pub fn horizons(&self) -> usize {
        self.horizons.load(Ordering::Relaxed)
    }

    /// Number of groups with a baseline.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every baseline, sorted by group (for snapshots).
    pub fn snapshot(&self) -> Vec<(WorkloadId, Baseline)> {
        let mut v: Vec<_> = self
            .map
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// Replaces the content with a snapshot's.
    pub fn restore(&self, items: Vec<(WorkloadId, Baseline)>) {
        self.map.clear();
        self.horizons.store(0, Ordering::Relaxed);
        self.history.reset();
        self.merge(items);
    }

    /// Inserts or replaces some groups (a moved Kafka partition's baselines).
    pub fn merge(&self, items: Vec<(WorkloadId, Baseline)>) {
        for (k, b) in items {
            let new = usize::from(b.horizon.is_some());
            self.history.set(k, b.windows_seen);
            if let Some(old) = self.map.insert(k, b) {
                self.horizons
                    .fetch_sub(usize::from(old.horizon.is_some()), Ordering::Relaxed);
            }
            self.horizons.fetch_add(new, Ordering::Relaxed);
        }
    }

    /// Approximate bytes per tracked group (struct plus heap).
    pub fn bytes_per_workload(&self) -> f64 {
        let n = self.map.len().max(1);
        let heap: usize = self.map.iter().map(|e| e.value().heap_bytes()).sum();
        // DashMap stores key + value per slot, plus hashbrown's control byte and load-factor slack.
        let slot = std::mem::size_of::<WorkloadId>() + std::mem::size_of::<Baseline>() + 1;
        (heap as f64 / n as f64) + slot as f64 * 8.0 / 7.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_in_locality_order_walk_each_shard_front_to_back_on_every_store() {
        let groups: Vec<WorkloadId> = (0..20_000u64)
            .map(|i| WorkloadId::of_key(&format!("ns{}/app{i}-7d9c8b6f4-*", i / 100)))
            .collect();
        let store = BaselineStore::default();
        for &g in &groups {
            store.map.insert(g, Baseline::default());
        }
        let mut ordered = groups.clone();
        ordered.sort_unstable_by_key(|&g| (store.locality(g), g));
        // Where each baseline's slot is: its shard, and the slot's place from the shard's start.
        let place = |g: WorkloadId| {
            let hash = store.map.hash_usize(&g);
            let shard = store.map.determine_shard(hash);
            let table = store.map.shards()[shard].read();
            let bucket = table
                .find(hash as u64, |(k, _)| *k == g)
                .expect("every group was inserted");
            (shard, unsafe { table.bucket_index(&bucket) })
        };
        let places: Vec<(usize, usize)> = ordered.iter().map(|&g| place(g)).collect();
        // 20k baselines take 512 slots a shard, under 4096: each shard is swept 4096 / 512 times,
        // each sweep front to back. A slot is the first free one of the 16 from its first probe,
        // so neighbours may step back a few slots; a step back by more starts a sweep.
        let slots = store.map.shards()[0].read().buckets();
        let sweeps = (1usize << LOCALITY_BITS) / slots;
        assert!(sweeps > 1, "{slots} slots a shard");
        let far_back = places
            .windows(2)
            .filter(|w| w[1].0 == w[0].0 && w[1].1 + 32 < w[0].1)
            .count();
        let shards = store.map.shards().len();
        assert!(
            far_back <= shards * (sweeps - 1) + places.len() / 200,
            "{far_back} steps back for {sweeps} sweeps of {shards} shards"
        );
        assert!(
            places.windows(2).all(|w| w[1].0 >= w[0].0),
            "the shards one after another"
        );
        // The order depends on the groups alone: a second store agrees.
        let other = BaselineStore::default();
        let mut again = groups;
        again.sort_unstable_by_key(|&g| (other.locality(g), g));
        assert_eq!(ordered, again);
    }

    #[test]
    fn ewm_tracks_mean_and_variance() {
        let mut e = Ewm::default();
        for i in 0..1000 {
            e.update(if i % 2 == 0 { 10.0 } else { 20.0 }, 0.01);
        }
        assert!((e.mean - 15.0).abs() < 1.0, "{}", e.mean);
        assert!((e.sd() - 5.0).abs() < 1.0, "{}", e.sd());
    }

    #[test]
    fn known_peers_are_capped_then_summarised() {
        let mut b = Baseline::default();
        for k in 0..1000u64 {
            b.remember(sketch::mix64(k));
        }
        assert_eq!(b.known_peers.len(), KNOWN_PEERS_CAP);
        for k in 0..1000u64 {
            assert!(b.knows(sketch::mix64(k)));
        }
        assert!(b.heap_bytes() < 1024);
    }

    #[test]
    fn eviction_takes_the_newest_and_idlest_first_and_spares_the_established() {
        let store = BaselineStore::new(BaselineConfig::default());
        let agg = WindowAggregate::default();
        // Group 1: 30 windows of history; groups 10..20: one window each, 10 idlest.
        for w in 0..30 {
            store.update(WorkloadId(1), &agg, w, w * 60, false);
        }
        for g in 10..20u64 {
            store.update(WorkloadId(g), &agg, g as i64, g as i64 * 60, false);
        }
        assert_eq!(store.evict_newest(3, 3), 3);
        assert_eq!(
            store.windows_seen(WorkloadId(10)),
            0,
            "idlest new group went first"
        );
        assert_eq!(store.windows_seen(WorkloadId(13)), 1);
        assert_eq!(
            store.evict_newest(100, 3),
            7,
            "the established group is spared"
        );
        assert_eq!(store.windows_seen(WorkloadId(1)), 30);
        assert_eq!(store.evict_newest(100, u64::MAX), 1);
        assert!(store.is_empty());
    }

    #[test]
    fn a_prefetch_skips_a_shard_held_by_a_writer_instead_of_waiting() {
        let store = BaselineStore::new(BaselineConfig::default());
        let agg = WindowAggregate::default();
        store.update(WorkloadId(7), &agg, 0, 0, false);
        let both_stages = |g: WorkloadId| {
            store.prefetch(g);
            store.prefetch_heap(g);
        };
        both_stages(WorkloadId(7));
        both_stages(WorkloadId(8));
        // A close holds the group's shard while it scores the group; a look-up ahead on the same
        // thread must not wait for it (a blocking read would never return here).
        let held = store.entry(WorkloadId(7));
        both_stages(WorkloadId(7));
        drop(held);
        assert_eq!(store.windows_seen(WorkloadId(7)), 1);
    }

    #[test]
    fn edge_masks_shift_with_windows() {
        let e = EdgeHistory {
            peer: WorkloadId(1),
            port: 1,
            proto: 6,
            mask: 0b101,
            last_window: 10,
            new_after_warmup: false,
            first_window: 8,
            bytes: Ewm::default(),
        };
        assert_eq!(e.mask_at(10), 0b101);
        assert_eq!(e.mask_at(12), 0b10100);
        assert_eq!(e.mask_at(100), 0);
    }
}
