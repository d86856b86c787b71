//! The pipeline: decode → assign windows → aggregate → close windows → detect → alerts.
//!
//! CPU work runs on `threads` workers with a barrier per stage, so the result is the same whatever the
//! thread count (invariant 1):
//! 1. decode: the batch is cut into contiguous chunks, one per worker;
//! 2. assign: one cheap sequential pass gives each record its window in input order (the watermark and
//!    lateness are decided here, per record, so batch boundaries do not matter);
//! 3. aggregate: workload `w` belongs to shard `w % threads`; every worker folds the sides of the records
//!    its shard owns into its own per-window maps, so no lock is taken per record (a large batch,
//!    whose decoding overlaps the sequential work, is folded on the calling thread in one pass that
//!    routes each side to its shard);
//! 4. close: windows below the watermark are scored shard by shard, findings are sorted, turned into
//!    alerts, and baselines updated.

use crate::alert::Alert;
use crate::alert::AlertBook;
use crate::baseline::cluster::EgressEdge;
use crate::baseline::{BaselineStore, ClusterState};
use crate::config::Config;
use crate::detect::multivariate::{Profile, Vector};
use crate::detect::{build_suite, DetectContext, Detector, Finding};
use crate::flow::id_map::{prefetch, prefetch_line};
use crate::flow::{Action, DecodeError, Decoder, FlowRecord, WorkloadId};
use crate::sink::{DeadLetter, DeadLetterSink};
use crate::source::LineBatch;
use crate::window::{auto_length, Side, WindowAggregate, WindowClock, WindowTable};
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counters of one run (the `--summary-json` output).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct RunStats {
    /// Lines decoded into records.
    pub records: u64,
    /// Lines rejected (dead-lettered).
    pub bad_records: u64,
    /// Records whose window had closed (folded into the next open window).
    pub late_records: u64,
    /// Records dated beyond `window.max_future_skew` (dead-lettered; the watermark did not move).
    #[serde(default)]
    pub future_records: u64,
    /// Records older than `window.stale_after` (dead-lettered, not merged).
    #[serde(default)]
    pub stale_records: u64,
    /// Records with a side not aggregated because the state budget refused a never-seen workload.
    #[serde(default)]
    pub over_budget_records: u64,
    /// State evicted by the budget (`baseline`, `workload_name`), and names of idle workloads dropped
    /// (`idle_workload_name`).
    #[serde(default)]
    pub evictions: BTreeMap<String, u64>,
    /// Estimated state (bytes) at the last window close.
    #[serde(default)]
    pub state_bytes: u64,
    /// Workloads whose names the registry holds (tracked now: names of workloads idle past
    /// `baseline.expire_after` are dropped with their baselines).
    pub workloads: u64,
    /// Entries held by each part of the state (`baselines`, `workload_names`, `policy_flows`,
    /// `cluster_destinations`, `cluster_ports`, `open_aggregates`), for the
    /// `flowwarden_state_entries` gauge: which part grows when memory does.
    #[serde(default)]
    pub state_entries: BTreeMap<String, u64>,
    /// Windows closed and scored.
    pub windows_closed: u64,
    /// Alerts emitted.
    pub alerts: u64,
    /// Alerts per detector.
    pub alerts_by_detector: BTreeMap<String, u64>,
    /// Early (provisional) alerts raised on open windows by the fast path; not in `alerts`.
    #[serde(default)]
    pub early_alerts: u64,
}

/// Wall time spent in each stage so far (`bench`). Measured per batch, not per record, so it
/// costs a few clock reads per batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageTimes {
    /// Decoding lines into records (and dead-lettering the bad ones).
    pub decode: Duration,
    /// The sequential pass that gives each record its window.
    pub assign: Duration,
    /// Folding records into per-window aggregates.
    pub aggregate: Duration,
    /// Closing windows: scoring, baseline updates, alerts.
    pub close: Duration,
    /// Records accepted into the windows closed so far: what `close` was spent on. Closes lag the
    /// records by a window or two, so over part of a run `close` per record of that part
    /// misleads when windows are few (see `bench`'s `steady_us_per_record`).
    pub records_closed: u64,
}

impl StageTimes {
    /// Sum of the stages.
    pub fn total(&self) -> Duration {
        self.decode + self.assign + self.aggregate + self.close
    }

    /// The time spent since `earlier`, a snapshot of the same pipeline's times.
    pub fn since(&self, earlier: &StageTimes) -> StageTimes {
        StageTimes {
            decode: self.decode.saturating_sub(earlier.decode),
            assign: self.assign.saturating_sub(earlier.assign),
            aggregate: self.aggregate.saturating_sub(earlier.aggregate),
            close: self.close.saturating_sub(earlier.close),
            records_closed: self.records_closed.saturating_sub(earlier.records_closed),
        }
    }
}

/// Memory held by the pipeline's per-workload state (`bench`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Footprint {
    /// Workload groups with a baseline.
    pub baseline_groups: usize,
    /// Bytes per baseline group (struct, heap and map slot).
    pub baseline_bytes_per_workload: f64,
    /// Aggregates of the windows still open.
    pub open_aggregates: usize,
    /// Bytes held by the open aggregates (struct, heap and map slot).
    pub open_aggregate_bytes: usize,
}

/// Everything the pipeline knows, for checkpoints: open windows, baselines, cluster state, open
/// alerts, workload names and counters. Restoring it and replaying the input after the checkpoint's
/// position gives the same alerts as an uninterrupted run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PipelineSnapshot {
    /// Format version.
    pub version: u32,
    /// Window clock (None until `auto` chose a length).
    pub clock: Option<WindowClock>,
    /// Records held back for `auto`.
    pub pending: Vec<(u64, FlowRecord)>,
    /// Open windows: window index → workload aggregates (sorted).
    pub windows: Vec<(i64, Vec<(WorkloadId, WindowAggregate)>)>,
    /// Baselines by workload group (sorted).
    pub baselines: Vec<(WorkloadId, crate::baseline::Baseline)>,
    /// Cluster-wide state.
    pub cluster: ClusterState,
    /// Open alerts.
    pub alerts: AlertBook,
    /// Workload names and labels.
    pub registry: Vec<(WorkloadId, crate::flow::WorkloadInfo)>,
    /// Counters.
    pub stats: RunStats,
    /// Lines consumed.
    pub next_line: u64,
    /// The policy ledger (which policy decided each flow).
    pub policy: crate::policy_insight::PolicyLedgerState,
    /// Fast-path suppression: (detector, workload, last window with an early alert), sorted.
    pub early: Vec<(String, WorkloadId, i64)>,
    /// Future-dated records waiting to see whether the input follows them.
    pub future_held: Vec<(u64, FlowRecord, i64)>,
}

/// Current snapshot format (2: baselines keep hour-of-day peaks and edge first windows, the cluster
/// state keeps edge peaks; 3: records keep the deciding and pending hits, the policy ledger,
/// aggregates remember fast-path alerts, baselines keep long-horizon scan counters, the clock its
/// skew bounds, the counters early alerts, budget and clock rejections; 4: aggregates and records
/// carry the workload's kind and namespace).
pub const SNAPSHOT_VERSION: u32 = 4;

/// Options that are not part of the config file.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Worker threads (1 = everything on the caller's thread).
    pub threads: usize,
    /// Keep per-record scores (`replay --scores`, `eval`).
    pub scores: bool,
    /// Keep every workload name seen instead of forgetting idle ones: offline runs that report on
    /// the whole input (`eval`, `replay --scores`) count and name every workload they saw.
    pub keep_names: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            threads: 1,
            scores: false,
            keep_names: false,
        }
    }
}

/// Per-record reference kept for `--scores`.
#[derive(Debug, Clone, Copy)]
struct ScoreRef {
    line: u64,
    src: WorkloadId,
    dst: WorkloadId,
    port: u16,
    denied: bool,
}

/// One worker's share of the open windows.
#[derive(Default)]
struct Shard {
    windows: BTreeMap<i64, WindowTable>,
    decoder: Option<Decoder>,
    /// Aggregates in this shard's last closed window: a new window's table starts that large, since
    /// growing one to 100k aggregates rehashed and copied it ten times (over half of aggregating).
    last_window_len: usize,
    /// The last closed window's table, emptied, for the next window to fill (see
    /// [`WindowTable::recycle`]).
    spare: Option<WindowTable>,
}

/// A fast-path threshold crossing found while aggregating (see [`crate::detect::fast_path`]).
struct EarlyHit {
    /// Position of the crossing record in the batch (orders hits as the input is ordered).
    idx: usize,
    /// The crossing record's end time (the alert's time).
    time: i64,
    window: i64,
    finding: Finding,
}

/// Where a line came from and its text (for a dead letter written after its batch is gone).
type LineOrigin = (crate::source::Position, Vec<u8>);

/// A future-dated record waiting to see whether the input follows it.
struct HeldRecord {
    line: u64,
    rec: FlowRecord,
    /// Seconds ahead of the newest start time when it came.
    ahead: i64,
    /// Where it came from and its text, for the dead letter if it is never confirmed (filled at
    /// the end of the batch it came in).
    origin: Option<LineOrigin>,
}

/// A decoded line waiting for its window.
struct Decoded {
    line: u64,
    result: Result<FlowRecord, DecodeError>,
}

/// The whole CPU pipeline.
pub struct Pipeline {
    cfg: Arc<Config>,
    threads: usize,
    shards: Vec<Shard>,
    detectors: Vec<Box<dyn Detector>>,
    baselines: BaselineStore,
    cluster: ClusterState,
    /// Destinations and ports the cluster tables hold ([`crate::baseline::cluster::table_cap`]).
    cluster_cap: usize,
    alerts: AlertBook,
    policy: crate::policy_insight::PolicyLedger,
    expire_after_s: i64,
    /// The idle expiry ran during this batch's window closes; names and free memory follow once
    /// its windows are closed.
    idle_pass_due: bool,
    /// See [`PipelineOptions::keep_names`].
    keep_names: bool,
    /// Aggregate on the calling thread: set while `push_overlapped` ingests a chunk (the other
    /// threads are decoding ahead; spawning per chunk would cost more than it saves).
    aggregate_inline: bool,
    /// Highest estimated state since memory was last given back (see `idle_pass_if_due`).
    state_peak_since_trim: u64,
    clock: Option<WindowClock>,
    /// Records held back until `auto` has seen enough spans.
    pending: Vec<(u64, FlowRecord)>,
    stats: RunStats,
    next_line: u64,
    dead_letters: Option<Box<dyn DeadLetterSink>>,
    score_refs: Option<BTreeMap<i64, Vec<ScoreRef>>>,
    scores: Vec<f32>,
    stage_times: StageTimes,
    /// Records accepted per open window (for [`StageTimes::records_closed`]).
    window_records: BTreeMap<i64, u64>,
    fast_path: Option<crate::detect::fast_path::FastPath>,
    /// Last window an early alert was raised for, per (detector, workload): early alerts of a
    /// sustained scan are suppressed like [`AlertBook`] suppresses repeats, in input order.
    early_last: FxHashMap<(&'static str, WorkloadId), i64>,
    /// The `[limits]` state budget: per-window admission, eviction, flood findings.
    budget: crate::limits::StateBudget,
    /// Aggregates held in open windows, counted once per batch and decremented as windows close
    /// (counting at every close was quadratic in the open windows).
    open_aggregates: Option<usize>,
    // Reused buffers.
    decoded: Vec<Decoded>,
    records: Vec<FlowRecord>,
    windows: Vec<i64>,
    /// Per record: which sides the budget admitted ([`crate::limits::admission::SOURCE_SIDE`], ...).
    sides: Vec<u8>,
    /// Records the clock rejected in the last ingest: (line, why, origin when known), for dead
    /// letters.
    rejected: Vec<(u64, crate::window::Rejection, Option<LineOrigin>)>,
    /// Future-dated records waiting to see whether the input follows them.
    future_held: std::collections::VecDeque<HeldRecord>,
}

/// Score written for a record no finding implicates.
const NO_SCORE: f32 = 0.0;

impl Pipeline {
    /// Builds a pipeline from a validated config.
    pub fn new(cfg: Arc<Config>, opts: PipelineOptions) -> anyhow::Result<Self> {
        let threads = opts.threads.max(1);
        let fixed = cfg
            .window
            .fixed_length()
            .map_err(|m| anyhow::anyhow!("window.length: {m}"))?;
        let lateness = cfg
            .window
            .lateness_s()
            .map_err(|m| anyhow::anyhow!("window.allowed_lateness: {m}"))?;
        let max_line = cfg.input.max_line_bytes;
        let (skew, stale) = cfg.window.clock_bounds_s();
        let mut baselines = BaselineStore::new(cfg.baseline.clone());
        baselines.set_scan_horizon(cfg.detect.slow_scan.horizon_s());
        baselines.keep_admission_history(cfg.limits.established_windows);
        Ok(Pipeline {
            threads,
            shards: (0..threads)
                .map(|_| Shard {
                    windows: BTreeMap::new(),
                    decoder: Some(Decoder::new(max_line)),
                    last_window_len: 0,
                    spare: None,
                })
                .collect(),
            detectors: build_suite(&cfg.detect),
            baselines,
            cluster: ClusterState::default(),
            cluster_cap: crate::baseline::cluster::table_cap(cfg.limits.budget_bytes()),
            alerts: AlertBook::new(&cfg.alerts),
            policy: crate::policy_insight::PolicyLedger::new(
                &cfg.detect.policy_drift,
                cfg.limits.budget_bytes(),
            ),
            expire_after_s: crate::window::parse_duration_s(&cfg.baseline.expire_after)
                .unwrap_or(7 * 86400),
            idle_pass_due: false,
            keep_names: opts.keep_names,
            aggregate_inline: false,
            state_peak_since_trim: 0,
            clock: fixed.map(|len| WindowClock::new(len, lateness).with_bounds(skew, stale)),
            pending: Vec::new(),
            stats: RunStats::default(),
            next_line: 0,
            dead_letters: None,
            score_refs: opts.scores.then(BTreeMap::new),
            scores: Vec::new(),
            stage_times: StageTimes::default(),
            window_records: BTreeMap::new(),
            fast_path: crate::detect::fast_path::FastPath::from_config(&cfg.detect),
            early_last: FxHashMap::default(),
            budget: crate::limits::StateBudget::new(&cfg.limits),
            open_aggregates: None,
            decoded: Vec::new(),
            records: Vec::new(),
            windows: Vec::new(),
            sides: Vec::new(),
            rejected: Vec::new(),
            future_held: Default::default(),
            cfg,
        })
    }

    /// Captures the whole state (see [`PipelineSnapshot`]).
    pub fn snapshot(&self) -> PipelineSnapshot {
        let mut windows: BTreeMap<i64, Vec<(WorkloadId, WindowAggregate)>> = BTreeMap::new();
        for shard in &self.shards {
            for (w, map) in &shard.windows {
                windows
                    .entry(*w)
                    .or_default()
                    .extend(map.iter().map(|(k, v)| (k, v.clone())));
            }
        }
        for v in windows.values_mut() {
            v.sort_unstable_by_key(|(k, _)| *k);
        }
        PipelineSnapshot {
            version: SNAPSHOT_VERSION,
            clock: self.clock.clone(),
            pending: self.pending.clone(),
            windows: windows.into_iter().collect(),
            baselines: self.baselines.snapshot(),
            cluster: self.cluster.clone(),
            alerts: self.alerts.clone(),
            registry: crate::flow::WorkloadRegistry::global().snapshot(),
            stats: self.stats.clone(),
            next_line: self.next_line,
            policy: self.policy.snapshot(),
            early: {
                let mut v: Vec<(String, WorkloadId, i64)> = self
                    .early_last
                    .iter()
                    .map(|(&(d, id), &w)| (d.to_string(), id, w))
                    .collect();
                v.sort_unstable();
                v
            },
            future_held: self
                .future_held
                .iter()
                .map(|h| (h.line, h.rec.clone(), h.ahead))
                .collect(),
        }
    }

    /// Replaces the state with a snapshot's (baselines, open windows, cluster state, alerts).
    pub fn restore(&mut self, snap: PipelineSnapshot) -> anyhow::Result<()> {
        if snap.version != SNAPSHOT_VERSION {
            anyhow::bail!(
                "checkpoint format {} is not the supported {}",
                snap.version,
                SNAPSHOT_VERSION
            );
        }
        crate::flow::WorkloadRegistry::global().restore(snap.registry);
        for shard in &mut self.shards {
            shard.windows.clear();
        }
        self.place_windows(snap.windows);
        self.baselines.restore(snap.baselines);
        self.cluster = snap.cluster;
        self.alerts = snap.alerts;
        self.alerts.reconfigure(&self.cfg.alerts);
        if let Some(c) = snap.clock {
            self.clock = Some(c);
        }
        self.pending = snap.pending;
        self.policy.restore(snap.policy);
        self.early_last = snap
            .early
            .into_iter()
            .filter_map(|(d, id, w)| {
                crate::detect::fast_path::detector_name(&d).map(|d| ((d, id), w))
            })
            .collect();
        self.future_held = snap
            .future_held
            .into_iter()
            .map(|(line, rec, ahead)| HeldRecord {
                line,
                rec,
                ahead,
                origin: None,
            })
            .collect();
        self.stats = snap.stats;
        self.next_line = snap.next_line;
        Ok(())
    }

    /// Starts from a trained model: its baselines, cluster state and workload names (not its windows,
    /// alerts or counters, which belong to the run that trained it).
    pub fn load_model(&mut self, snap: PipelineSnapshot) -> anyhow::Result<()> {
        if snap.version != SNAPSHOT_VERSION {
            anyhow::bail!(
                "model format {} is not the supported {}",
                snap.version,
                SNAPSHOT_VERSION
            );
        }
        crate::flow::WorkloadRegistry::global().restore(snap.registry);
        self.baselines.restore(snap.baselines);
        self.cluster = snap.cluster;
        self.policy.restore(snap.policy);
        Ok(())
    }

    /// The part of the state that belongs to some workloads (a Kafka partition's slice for the
    /// state topic): their registry entries, their open windows and the baselines of their groups.
    /// Cluster state, open alerts and counters stay behind (they are not per workload); the
    /// snapshot's `stats` count what it holds (`workloads` = registry entries kept).
    pub fn snapshot_filtered(
        &self,
        keep: &dyn Fn(WorkloadId, &crate::flow::WorkloadInfo) -> bool,
    ) -> PipelineSnapshot {
        let registry: Vec<(WorkloadId, crate::flow::WorkloadInfo)> =
            crate::flow::WorkloadRegistry::global()
                .snapshot()
                .into_iter()
                .filter(|(id, info)| keep(*id, info))
                .collect();
        let ids: BTreeSet<WorkloadId> = registry.iter().map(|(id, _)| *id).collect();
        let mut groups: BTreeSet<WorkloadId> = registry
            .iter()
            .map(|(id, info)| group_of(*id, info))
            .collect();
        let mut windows: BTreeMap<i64, Vec<(WorkloadId, WindowAggregate)>> = BTreeMap::new();
        for shard in &self.shards {
            for (w, map) in &shard.windows {
                for (id, agg) in map.iter().filter(|(id, _)| ids.contains(id)) {
                    groups.insert(agg.group);
                    windows.entry(*w).or_default().push((id, agg.clone()));
                }
            }
        }
        for v in windows.values_mut() {
            v.sort_unstable_by_key(|(k, _)| *k);
        }
        let baselines: Vec<(WorkloadId, crate::baseline::Baseline)> = self
            .baselines
            .snapshot()
            .into_iter()
            .filter(|(g, _)| groups.contains(g))
            .collect();
        PipelineSnapshot {
            version: SNAPSHOT_VERSION,
            clock: self.clock.clone(),
            pending: Vec::new(),
            windows: windows.into_iter().collect(),
            baselines,
            cluster: ClusterState::default(),
            alerts: AlertBook::new(&self.cfg.alerts),
            stats: RunStats {
                workloads: registry.len() as u64,
                ..RunStats::default()
            },
            registry,
            next_line: 0,
            policy: Default::default(),
            early: Vec::new(),
            future_held: Vec::new(),
        }
    }

    /// Takes over a slice made by [`Pipeline::snapshot_filtered`] (another daemon's partition):
    /// its baselines and open-window aggregates replace this pipeline's for the same groups and
    /// workloads, its registry entries are added; everything else is kept.
    pub fn merge_snapshot(&mut self, snap: PipelineSnapshot) -> anyhow::Result<()> {
        if snap.version != SNAPSHOT_VERSION {
            anyhow::bail!(
                "state format {} is not the supported {}",
                snap.version,
                SNAPSHOT_VERSION
            );
        }
        crate::flow::WorkloadRegistry::global().restore(snap.registry);
        self.place_windows(snap.windows);
        self.baselines.merge(snap.baselines);
        if self.clock.is_none() {
            self.clock = snap.clock;
        }
        Ok(())
    }

    /// The policy ledger (for `recommend` and `train`).
    pub fn policy_ledger(&self) -> &crate::policy_insight::PolicyLedger {
        &self.policy
    }

    /// Puts snapshot aggregates into the shards that own their workloads.
    fn place_windows(&mut self, windows: Vec<(i64, Vec<(WorkloadId, WindowAggregate)>)>) {
        self.open_aggregates = None;
        let threads = self.shards.len() as u64;
        for (w, items) in windows {
            for (id, agg) in items {
                self.shards[shard_of(id, threads)]
                    .windows
                    .entry(w)
                    .or_default()
                    .insert(id, agg);
            }
        }
    }

    /// A workload group's baseline (tests and diagnostics).
    pub fn baseline(&self, group: WorkloadId) -> Option<crate::baseline::Baseline> {
        self.baselines.get(group).map(|b| b.value().clone())
    }

    /// Takes new thresholds (SIGHUP) without losing baselines or open windows.
    pub fn reconfigure(&mut self, cfg: &Config) {
        self.detectors = build_suite(&cfg.detect);
        self.alerts.reconfigure(&cfg.alerts);
        self.policy
            .reconfigure(&cfg.detect.policy_drift, cfg.limits.budget_bytes());
        self.baselines.reconfigure(cfg.baseline.clone());
        self.baselines
            .set_scan_horizon(cfg.detect.slow_scan.horizon_s());
        self.expire_after_s = crate::window::parse_duration_s(&cfg.baseline.expire_after)
            .unwrap_or(self.expire_after_s);
        self.cfg = Arc::new(cfg.clone());
    }

    /// Sends rejected lines to `sink`.
    pub fn set_dead_letters(&mut self, sink: Box<dyn DeadLetterSink>) {
        self.dead_letters = Some(sink);
    }

    /// Counters so far.
    pub fn stats(&self) -> RunStats {
        let mut s = self.stats.clone();
        s.workloads = crate::flow::WorkloadRegistry::global().len() as u64;
        let open_aggregates = open_aggregate_count(&self.shards);
        s.state_entries = [
            ("baselines", self.baselines.len()),
            ("workload_names", s.workloads as usize),
            ("policy_flows", self.policy.len()),
            ("cluster_destinations", self.cluster.dest_sharers.len()),
            ("cluster_ports", self.cluster.port_sharers.len()),
            ("open_aggregates", open_aggregates),
        ]
        .into_iter()
        .map(|(k, n)| (k.to_string(), n as u64))
        .collect();
        s
    }

    /// Time spent in each stage so far.
    pub fn stage_times(&self) -> StageTimes {
        self.stage_times
    }

    /// Memory held by baselines and open windows now.
    pub fn footprint(&self) -> Footprint {
        let (mut open_aggregates, mut open_aggregate_bytes) = (0, 0);
        for shard in &self.shards {
            for map in shard.windows.values() {
                open_aggregates += map.len();
                open_aggregate_bytes +=
                    map.table_bytes() + map.iter().map(|(_, a)| a.heap_bytes()).sum::<usize>();
            }
        }
        Footprint {
            baseline_groups: self.baselines.len(),
            baseline_bytes_per_workload: self.baselines.bytes_per_workload(),
            open_aggregates,
            open_aggregate_bytes,
        }
    }

    /// Event-time watermark (epoch s), once known.
    pub fn watermark(&self) -> Option<i64> {
        self.clock.as_ref().and_then(|c| c.watermark())
    }

    /// Window length, once known.
    pub fn window_length(&self) -> Option<i64> {
        self.clock.as_ref().map(|c| c.len())
    }

    /// Processes one batch; returns the alerts of the windows it closed.
    pub fn push(&mut self, batch: &LineBatch) -> anyhow::Result<Vec<Alert>> {
        if self.threads > 1 && batch.len() >= 2 * OVERLAP_CHUNK && self.clock.is_some() {
            return self.push_overlapped(batch);
        }
        let started = Instant::now();
        let first_line = self.next_line;
        self.decode(batch);
        let decoded = std::mem::take(&mut self.decoded);
        self.stage_times.decode += started.elapsed();
        let alerts = self.process_decoded(batch, first_line, decoded);
        self.idle_pass_if_due();
        alerts
    }

    /// Counts and dead-letters what did not decode, then ingests the records: the sequential part
    /// of a batch (or of one chunk of it). `first_line` is the line number of `batch`'s first line.
    fn process_decoded(
        &mut self,
        batch: &LineBatch,
        first_line: u64,
        mut decoded: Vec<Decoded>,
    ) -> anyhow::Result<Vec<Alert>> {
        let started = Instant::now();
        let bad_before = self.stats.bad_records;
        for d in &decoded {
            let Err(e) = &d.result else { continue };
            self.stats.bad_records += 1;
            let i = (d.line - first_line) as usize;
            let pos = batch.position(i);
            if let Some(dl) = &mut self.dead_letters {
                let reason = match batch.lines[i].truncated_len {
                    Some(n) => format!("line of {n} bytes exceeds the maximum line length"),
                    None => e.to_string(),
                };
                dl.send(&DeadLetter::new(pos, reason, batch.line(i)))?;
            }
        }
        self.stats.records += decoded.len() as u64 - (self.stats.bad_records - bad_before);
        self.stage_times.decode += started.elapsed();
        let alerts = if self.clock.is_none() {
            let fresh = decoded
                .drain(..)
                .filter_map(|d| d.result.ok().map(|rec| (d.line, rec)));
            self.pending.extend(fresh);
            if self.pending.len() < self.cfg.window.auto_sample.max(1) {
                Vec::new()
            } else {
                self.start_clock();
                self.ingest_pending()?
            }
        } else {
            // The records go from the decoded chunk straight into the batch (copying 280-byte
            // records through an intermediate vector was a twentieth of the sequential thread's
            // time).
            self.ingest(&mut decoded)?
        };
        if self.decoded.capacity() < decoded.capacity() {
            self.decoded = decoded;
        }
        self.remember_held_origins(batch, first_line);
        self.dead_letter_rejected(Some((batch, first_line)))?;
        Ok(alerts)
    }

    /// A large batch on several threads, decoding overlapped with the sequential work: the batch is
    /// cut into chunks ([`overlap_chunks`]) that helper threads decode ahead while this thread
    /// ingests the decoded chunks in input order (assign, aggregate, window closes), decoding a chunk
    /// itself whenever the next one is not ready. Decoding one batch on every thread and then
    /// ingesting it on one left the other cores idle for the sequential part (a fifth to a half of
    /// the work). Chunks are ingested in line order and windows close on the event-time frontier,
    /// so the alerts are those of any other batching.
    fn push_overlapped(&mut self, batch: &LineBatch) -> anyhow::Result<Vec<Alert>> {
        let n = batch.len();
        let first_line = self.next_line;
        self.next_line += n as u64;
        let bounds = overlap_chunks(n);
        let chunks = bounds.len();
        let decode_chunk = |dec: &mut Decoder, c: usize| -> Vec<Decoded> {
            let range = bounds.get(c).copied().unwrap_or((n, n));
            let mut out = Vec::with_capacity(range.1 - range.0);
            decode_lines(dec, batch, range, first_line, &mut out);
            out
        };
        let mut own = self.shards[0].decoder.take().unwrap_or_default();
        let helpers: Vec<Decoder> = self.shards[1..]
            .iter_mut()
            .map(|s| s.decoder.take().unwrap_or_default())
            .collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut alerts = Vec::new();
        let mut outcome = Ok(());
        self.aggregate_inline = true;
        let returned: Vec<Decoder> = std::thread::scope(|sc| {
            let (tx, rx) = std::sync::mpsc::channel::<(usize, Vec<Decoded>)>();
            let handles: Vec<_> = helpers
                .into_iter()
                .map(|mut dec| {
                    let (tx, next, decode_chunk) = (tx.clone(), &next, &decode_chunk);
                    sc.spawn(move || {
                        loop {
                            let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if c >= chunks || tx.send((c, decode_chunk(&mut dec, c))).is_err() {
                                break;
                            }
                        }
                        dec
                    })
                })
                .collect();
            drop(tx);
            let mut ready: BTreeMap<usize, Vec<Decoded>> = BTreeMap::new();
            for c in 0..chunks {
                let waited = Instant::now();
                let decoded = loop {
                    while let Ok((k, d)) = rx.try_recv() {
                        ready.insert(k, d);
                    }
                    if let Some(d) = ready.remove(&c) {
                        break d;
                    }
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if k < chunks {
                        ready.insert(k, decode_chunk(&mut own, k));
                    } else if let Ok((k, d)) = rx.recv() {
                        ready.insert(k, d);
                    } else {
                        // Every helper is gone (one panicked): its chunk never comes.
                        break Vec::new();
                    }
                };
                self.stage_times.decode += waited.elapsed();
                if outcome.is_ok() {
                    match self.process_decoded(batch, first_line, decoded) {
                        Ok(a) => alerts.extend(a),
                        Err(e) => outcome = Err(e),
                    }
                }
            }
            handles
                .into_iter()
                .map(|h| match h.join() {
                    Ok(dec) => dec,
                    Err(p) => std::panic::resume_unwind(p),
                })
                .collect()
        });
        self.aggregate_inline = false;
        self.shards[0].decoder = Some(own);
        for (shard, dec) in self.shards[1..].iter_mut().zip(returned) {
            shard.decoder = Some(dec);
        }
        self.idle_pass_if_due();
        outcome.map(|()| alerts)
    }

    /// Keeps the position and text of the future-dated records `batch` brought, for their dead
    /// letters should the input never follow them.
    fn remember_held_origins(&mut self, batch: &LineBatch, first: u64) {
        if self.dead_letters.is_none() {
            return;
        }
        for h in self.future_held.iter_mut().rev() {
            if h.line < first {
                break;
            }
            let i = (h.line - first) as usize;
            if h.origin.is_none() && i < batch.len() {
                h.origin = Some((batch.position(i), batch.line(i).to_vec()));
            }
        }
    }

    /// Dead-letters the records the clock rejected in the last ingest (future or stale), with the
    /// raw line when it is in `batch` (records held back for `auto` only keep their position).
    fn dead_letter_rejected(&mut self, batch: Option<(&LineBatch, u64)>) -> anyhow::Result<()> {
        let rejected = std::mem::take(&mut self.rejected);
        let Some(dl) = &mut self.dead_letters else {
            return Ok(());
        };
        let (batch, first) = match batch {
            Some((b, first)) => (Some(b), first),
            None => (None, self.next_line),
        };
        for (line, why, origin) in rejected {
            if let Some((pos, raw)) = origin {
                dl.send(&DeadLetter::new(pos, why.to_string(), &raw))?;
                continue;
            }
            let in_batch = batch.filter(|_| line >= first).and_then(|b| {
                let i = (line - first) as usize;
                (i < b.len()).then_some((b, i))
            });
            let dead = match in_batch {
                Some((b, i)) => DeadLetter::new(b.position(i), why.to_string(), b.line(i)),
                None => DeadLetter::new(
                    crate::source::Position {
                        source: String::new(),
                        line,
                        offset: 0,
                    },
                    why.to_string(),
                    b"",
                ),
            };
            dl.send(&dead)?;
        }
        Ok(())
    }

    /// Ends the input: closes every open window.
    pub fn finish(&mut self) -> anyhow::Result<Vec<Alert>> {
        let mut alerts = Vec::new();
        if self.clock.is_none() {
            self.start_clock();
            alerts.extend(self.ingest_pending()?);
        }
        // Nothing follows. A run of future-dated records at the end of a finite input is the last
        // capture after a gap (too short to outvote the records before it): processed. A few
        // stragglers are a broken clock: dead-lettered.
        if self.future_held.len() >= FUTURE_TAIL_MIN {
            if let Some(mut clock) = self.clock.take() {
                self.records.clear();
                self.windows.clear();
                self.sides.clear();
                clock.begin_jump();
                self.release_held(&mut clock);
                self.clock = Some(clock);
                let hits = self.aggregate();
                alerts.extend(self.raise_early(hits));
            }
        }
        while let Some(h) = self.future_held.pop_front() {
            self.reject(h.line, crate::window::Rejection::Future(h.ahead), h.origin);
        }
        self.dead_letter_rejected(None)?;
        let open: BTreeSet<i64> = self
            .shards
            .iter()
            .flat_map(|s| s.windows.keys().copied())
            .collect();
        let open: Vec<i64> = open.into_iter().collect();
        let started = Instant::now();
        alerts.extend(self.close_windows(&open));
        self.count_records_closed(None);
        self.stage_times.close += started.elapsed();
        if let Some(dl) = &mut self.dead_letters {
            dl.flush()?;
        }
        Ok(alerts)
    }

    /// Per-record scores in input order (NaN for lines that did not decode); call after [`Pipeline::finish`].
    pub fn take_scores(&mut self) -> Vec<f32> {
        self.scores.resize(self.next_line as usize, f32::NAN);
        std::mem::take(&mut self.scores)
    }

    fn start_clock(&mut self) {
        let sample = self.cfg.window.auto_sample.max(1);
        let mut spans: Vec<i64> = self
            .pending
            .iter()
            .take(sample)
            .map(|(_, r)| r.end_time - r.start_time)
            .collect();
        let len = auto_length(&mut spans);
        let lateness = self.cfg.window.lateness_s().unwrap_or(0);
        tracing::info!(window_s = len, "window length chosen by auto");
        let (skew, stale) = self.cfg.window.clock_bounds_s();
        self.clock = Some(WindowClock::new(len, lateness).with_bounds(skew, stale));
    }

    fn decode(&mut self, batch: &LineBatch) {
        let n = batch.len();
        let first_line = self.next_line;
        self.next_line += n as u64;
        self.decoded.clear();
        if self.threads == 1 || n < 256 {
            let dec = self.shards[0].decoder.get_or_insert_with(Decoder::default);
            decode_lines(dec, batch, (0, n), first_line, &mut self.decoded);
            return;
        }
        let chunk = n.div_ceil(self.threads);
        let parts: Vec<Vec<Decoded>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .shards
                .iter_mut()
                .enumerate()
                .map(|(t, shard)| {
                    let dec = shard.decoder.take().unwrap_or_default();
                    s.spawn(move || {
                        let mut dec = dec;
                        let range = ((t * chunk).min(n), ((t + 1) * chunk).min(n));
                        let mut out = Vec::with_capacity(range.1 - range.0);
                        decode_lines(&mut dec, batch, range, first_line, &mut out);
                        (dec, out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .zip(self.shards.iter_mut())
                .map(|(h, shard)| match h.join() {
                    Ok((dec, out)) => {
                        shard.decoder = Some(dec);
                        out
                    }
                    Err(p) => std::panic::resume_unwind(p),
                })
                .collect()
        });
        for p in parts {
            self.decoded.extend(p);
        }
    }

    /// Ingests the records held while the clock's window length was being chosen.
    fn ingest_pending(&mut self) -> anyhow::Result<Vec<Alert>> {
        let mut pending: Vec<Decoded> = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(line, rec)| Decoded {
                line,
                result: Ok(rec),
            })
            .collect();
        self.ingest(&mut pending)
    }

    /// Assigns the decoded records to windows and aggregates them, then closes the windows the
    /// frontier passed. Takes each record out of `fresh` (leaving an error in its place).
    fn ingest(&mut self, fresh: &mut [Decoded]) -> anyhow::Result<Vec<Alert>> {
        let started = Instant::now();
        // The closes of the batch before changed baselines; the admission reads their history
        // table. Nothing changes it until this batch's closes, after every record is admitted.
        self.baselines.sync_history();
        let Some(mut clock) = self.clock.take() else {
            return Ok(Vec::new());
        };
        self.records.clear();
        self.windows.clear();
        self.sides.clear();
        for i in 0..fresh.len() {
            self.prefetch_for_accept(fresh, i);
            let line = fresh[i].line;
            let Ok(rec) = std::mem::replace(&mut fresh[i].result, Err(DecodeError::Empty)) else {
                continue;
            };
            self.expire_future_held(line);
            let a = clock.assign(rec.start_time);
            match a.rejected {
                None => self.accept(line, rec, a),
                Some(crate::window::Rejection::Future(ahead)) => {
                    // Held, not dropped: if the records after it agree, the input really jumped
                    // forward (a gap between captures) and every held record is processed.
                    self.future_held.push_back(HeldRecord {
                        line,
                        rec,
                        ahead,
                        origin: None,
                    });
                    if a.jump {
                        self.release_held(&mut clock);
                    }
                }
                Some(why) => self.reject(line, why, None),
            }
        }
        let frontier = clock.frontier();
        self.clock = Some(clock);
        // Per run of records in one window: a map update per run, not per record.
        let mut rest = &self.windows[..];
        while let Some(&w) = rest.first() {
            let run = rest.iter().take_while(|&&x| x == w).count();
            *self.window_records.entry(w).or_default() += run as u64;
            rest = &rest[run..];
        }
        let assigned = Instant::now();
        self.stage_times.assign += assigned - started;
        let hits = self.aggregate();
        let mut alerts = self.raise_early(hits);
        let aggregated = Instant::now();
        self.stage_times.aggregate += aggregated - assigned;
        if let Some(f) = frontier {
            let closable: BTreeSet<i64> = self
                .shards
                .iter()
                .flat_map(|s| s.windows.range(..f).map(|(w, _)| *w))
                .collect();
            let closable: Vec<i64> = closable.into_iter().collect();
            alerts.extend(self.close_windows(&closable));
            self.count_records_closed(Some(f));
        }
        self.stage_times.close += aggregated.elapsed();
        Ok(alerts)
    }

    /// Asks for what accepting the records ahead of `fresh[i]` will look up: past a few hundred
    /// thousand workloads the window's admission set and the policy ledger miss the cache on
    /// every record (a third of the run at a million workloads). The ledger's index slot and the
    /// admission set's slots are asked for [`PREFETCH_AHEAD`] records on; half as far on, once
    /// those are there, the ledger's entry and the baselines of workloads the set does not hold
    /// yet (their first sight in the window looks their history up).
    #[inline]
    fn prefetch_for_accept(&self, fresh: &[Decoded], i: usize) {
        let ahead = |k: usize| match fresh.get(k) {
            Some(Decoded {
                result: Ok(rec), ..
            }) => Some(rec),
            _ => None,
        };
        // Most records of a batch fall in the window of the one before them.
        let window = self.windows.last().copied();
        if let Some(rec) = ahead(i + PREFETCH_AHEAD) {
            if let Some(w) = window {
                self.budget.prefetch(w, rec);
            }
            self.policy.prefetch_index(rec);
        }
        if let Some(rec) = ahead(i + PREFETCH_AHEAD / 2) {
            self.policy.prefetch_entry(rec);
            if let Some(w) = window {
                self.budget.prefetch_history(w, rec, &self.baselines);
            }
        }
    }

    /// Gives an assigned record to the batch (admission, scores, policy ledger).
    fn accept(&mut self, line: u64, rec: FlowRecord, a: crate::window::Assignment) {
        if a.late {
            self.stats.late_records += 1;
        }
        let sides = self.budget.admit(a.window, &rec, &self.baselines);
        if sides
            != crate::limits::admission::SOURCE_SIDE | crate::limits::admission::DESTINATION_SIDE
        {
            self.stats.over_budget_records += 1;
        }
        self.sides.push(sides);
        if let Some(refs) = &mut self.score_refs {
            refs.entry(a.window).or_default().push(ScoreRef {
                line,
                src: rec.src.id,
                dst: rec.dst.id,
                port: rec.dst.port.unwrap_or(0),
                denied: rec.action == Action::Deny,
            });
        }
        self.policy.observe(&rec, a.window);
        self.windows.push(a.window);
        self.records.push(rec);
    }

    /// Re-assigns every held future record in input order while `clock` believes the jump, then
    /// ends the jump.
    fn release_held(&mut self, clock: &mut crate::window::WindowClock) {
        // Called at the end of the input too, after the last batch's closes.
        self.baselines.sync_history();
        for h in std::mem::take(&mut self.future_held) {
            let a = clock.assign(h.rec.start_time);
            match a.rejected {
                None => self.accept(h.line, h.rec, a),
                Some(why) => self.reject(h.line, why, h.origin),
            }
        }
        clock.jump_done();
    }

    /// Counts a record the clock refused and queues it for the dead-letter output.
    fn reject(&mut self, line: u64, why: crate::window::Rejection, origin: Option<LineOrigin>) {
        match why {
            crate::window::Rejection::Future(_) => self.stats.future_records += 1,
            crate::window::Rejection::Stale(_) => self.stats.stale_records += 1,
        }
        self.rejected.push((line, why, origin));
    }

    /// Future records held longer than [`FUTURE_WAIT`] lines without the input following them are
    /// clock skew: dead-lettered.
    fn expire_future_held(&mut self, line: u64) {
        while let Some(h) = self.future_held.front() {
            if line.saturating_sub(h.line) <= FUTURE_WAIT {
                break;
            }
            if let Some(h) = self.future_held.pop_front() {
                self.reject(h.line, crate::window::Rejection::Future(h.ahead), h.origin);
            }
        }
    }

    /// Folds the batch's records into the shards' open windows; returns the fast-path threshold
    /// crossings, judged on each aggregate as it stood at the crossing record.
    fn aggregate(&mut self) -> Vec<EarlyHit> {
        // Windows gain aggregates: the cached count is recounted at the next close.
        self.open_aggregates = None;
        let threads = self.threads as u64;
        let records = &self.records;
        let windows = &self.windows;
        let fast_path = self.fast_path;
        let clock = self.clock.clone();
        let detect_cfg = &self.cfg.detect;
        let cluster = &self.cluster;
        let warmup_windows = self.baselines.config().warmup_windows;
        let no_profiles = FxHashMap::default();
        let sides = &self.sides;
        use crate::limits::admission::{DESTINATION_SIDE, SOURCE_SIDE};
        // Folds the records' sides into `shards`, the shards numbered `base..base + shards.len()`:
        // one shard on each thread, or all of them in one pass on the calling thread.
        let fold = |base: usize, shards: &mut [Shard]| -> Vec<EarlyHit> {
            let mut hits = Vec::new();
            let mut early =
                |idx: usize, id: WorkloadId, w: i64, agg: &WindowAggregate, bits: u8| {
                    let Some(clock) = &clock else { return };
                    let ctx = DetectContext {
                        window: w,
                        window_start: clock.start_of(w),
                        window_end: clock.start_of(w + 1),
                        cfg: detect_cfg,
                        soft: false,
                        cluster,
                        warmup_windows,
                        namespace_profiles: &no_profiles,
                    };
                    let mut found = Vec::new();
                    crate::detect::fast_path::findings(&ctx, id, agg, bits, &mut found);
                    hits.extend(found.into_iter().map(|finding| EarlyHit {
                        idx,
                        time: records[idx].end_time,
                        window: w,
                        finding,
                    }));
                };
            // The position in `shards` of the shard that owns `id`, if it is one of them.
            let local = |id: WorkloadId| shard_of(id, threads).wrapping_sub(base);
            // The table of the `j`th of `shards` for the run's window, if that shard has one.
            fn map_of<'m>(
                maps: &'m mut [Option<&mut WindowTable>],
                j: usize,
            ) -> Option<&'m mut WindowTable> {
                maps.get_mut(j).and_then(|m| m.as_deref_mut())
            }
            // Records of a batch mostly share a window: look the window's map up once per run of
            // equal windows, not twice per record.
            let mut i = 0;
            while i < records.len() {
                let w = windows[i];
                let run = windows[i..].iter().take_while(|&&x| x == w).count();
                let run_records = &records[i..i + run];
                let run_sides = &sides[i..i + run];
                // A shard holds only the windows it has records for.
                let mut maps: smallvec::SmallVec<[Option<&mut WindowTable>; 2]> = shards
                    .iter_mut()
                    .enumerate()
                    .map(|(j, shard)| {
                        let owned = |id: WorkloadId| local(id) == j;
                        if !run_records
                            .iter()
                            .any(|r| owned(r.src.id) || owned(r.dst.id))
                        {
                            return None;
                        }
                        let (hint, spare) = (shard.last_window_len, &mut shard.spare);
                        Some(
                            shard
                                .windows
                                .entry(w)
                                .or_insert_with(|| match spare.take() {
                                    Some(mut t) => {
                                        t.reserve_total(hint);
                                        t
                                    }
                                    None => WindowTable::with_capacity(hint),
                                }),
                        )
                    })
                    .collect();
                if maps.iter().all(Option::is_none) {
                    i += run;
                    continue;
                }
                for (k, (rec, &side)) in run_records.iter().zip(run_sides).enumerate() {
                    // Past 100k workloads the index and the aggregates miss the cache: ask for the
                    // index entries of the records PREFETCH_AHEAD on, and for the aggregates of
                    // those half as far on (their index entries came earlier).
                    if let Some(ahead) = run_records.get(k + PREFETCH_AHEAD) {
                        for id in [ahead.src.id, ahead.dst.id] {
                            if let Some(map) = map_of(&mut maps, local(id)) {
                                map.prefetch_index(id);
                            }
                        }
                    }
                    if let Some(ahead) = run_records.get(k + PREFETCH_AHEAD / 2) {
                        for id in [ahead.src.id, ahead.dst.id] {
                            if let Some(map) = map_of(&mut maps, local(id)) {
                                map.prefetch_aggregate(id);
                            }
                        }
                    }
                    if side & SOURCE_SIDE != 0 {
                        if let Some(map) = map_of(&mut maps, local(rec.src.id)) {
                            let agg = map.entry(rec.src.id);
                            let changed = agg.add(rec, Side::Source);
                            if let Some(fp) = &fast_path {
                                let bits = fp.crossed(agg, changed);
                                if bits != 0 {
                                    early(i + k, rec.src.id, w, agg, bits);
                                }
                            }
                        }
                    }
                    if rec.dst.id != rec.src.id && side & DESTINATION_SIDE != 0 {
                        if let Some(map) = map_of(&mut maps, local(rec.dst.id)) {
                            map.entry(rec.dst.id).add(rec, Side::Destination);
                        }
                    }
                }
                i += run;
            }
            hits
        };
        // Spawning costs more than folding a small batch (the low-latency case: a followed file
        // or Kafka delivering a few hundred lines at a time). Folding inline takes every shard in
        // one pass over the records: a pass per shard read each record once per shard, which made
        // aggregating a third dearer on two threads than on one.
        if self.threads == 1 || records.len() < PARALLEL_AGGREGATE_MIN || self.aggregate_inline {
            return fold(0, &mut self.shards);
        }
        std::thread::scope(|sc| {
            let handles: Vec<_> = self
                .shards
                .chunks_mut(1)
                .enumerate()
                .map(|(s, shard)| {
                    let fold = &fold;
                    sc.spawn(move || fold(s, shard))
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| match h.join() {
                    Ok(v) => v,
                    Err(p) => std::panic::resume_unwind(p),
                })
                .collect()
        })
    }

    /// Turns fast-path crossings into early alerts, in input order, suppressing a detector's
    /// repeats for the same workload within the alert suppression horizon.
    fn raise_early(&mut self, mut hits: Vec<EarlyHit>) -> Vec<Alert> {
        if hits.is_empty() {
            return Vec::new();
        }
        let Some(len) = self.clock.as_ref().map(|c| c.len()) else {
            return Vec::new();
        };
        hits.sort_by(|a, b| {
            a.idx
                .cmp(&b.idx)
                .then(a.finding.detector.cmp(b.finding.detector))
        });
        let horizon = self.early_horizon_windows(len);
        let mut out = Vec::new();
        for hit in hits {
            let f = &hit.finding;
            if f.severity < self.cfg.alerts.min_severity {
                continue;
            }
            let key = (f.detector, f.workload);
            if let Some(&last) = self.early_last.get(&key) {
                if (hit.window - last).abs() <= horizon {
                    continue;
                }
            }
            self.early_last.insert(key, hit.window);
            let clock = self.clock.as_ref().expect("checked above");
            let mut alert = crate::alert::book::to_alert(
                f,
                clock.start_of(hit.window),
                clock.start_of(hit.window + 1),
            );
            alert.provisional = true;
            alert.time = hit.time;
            alert.id = crate::detect::fast_path::early_alert_id(
                f.detector,
                &alert.workload,
                alert.window_start,
            );
            self.stats.early_alerts += 1;
            out.push(alert);
        }
        out
    }

    /// The alert suppression horizon in windows of `len` seconds.
    fn early_horizon_windows(&self, len: i64) -> i64 {
        (self.alerts.suppression_s() + len - 1).div_euclid(len.max(1))
    }

    /// Scores windows `ws` (ascending), updates baselines and cluster state, returns their alerts.
    ///
    /// Windows close one after another: every workload of window `w` is scored against the state as
    /// of `w - 1` (in parallel when the window is large), then the state is updated in workload order.
    /// Scores therefore never depend on the thread count or on visiting order.
    fn close_windows(&mut self, ws: &[i64]) -> Vec<Alert> {
        let mut alerts = Vec::new();
        for &w in ws {
            let started = std::time::Instant::now();
            alerts.extend(self.close_window(w));
            crate::telemetry::record_window_close(1, started.elapsed());
        }
        if let (Some(&last), Some(len)) = (ws.last(), self.window_length()) {
            if !self.early_last.is_empty() {
                let horizon = self.early_horizon_windows(len);
                self.early_last.retain(|_, w| *w + horizon >= last);
            }
        }
        alerts
    }

    /// Adds the records of the windows below `frontier` (all windows when `None`) to
    /// [`StageTimes::records_closed`] and forgets their counts: every such window was just closed,
    /// or had no aggregate on any shard (all its records over budget) and is done all the same.
    fn count_records_closed(&mut self, frontier: Option<i64>) {
        let open = match frontier {
            Some(f) => self.window_records.split_off(&f),
            None => BTreeMap::new(),
        };
        let done = std::mem::replace(&mut self.window_records, open);
        self.stage_times.records_closed += done.values().sum::<u64>();
    }

    /// Forgets idle names and gives free memory back if the idle expiry ran during this batch. Once
    /// per batch at most, at its end: a replayed capture closes thousands of sparse windows per
    /// batch, and doing it at every 256th of them cost a fifth of the run; and only at the end is
    /// every decoded record of the batch in a window (an overlapped batch has records decoded and
    /// not yet ingested until then, whose names must stay).
    fn idle_pass_if_due(&mut self) {
        if std::mem::take(&mut self.idle_pass_due) {
            if !self.keep_names {
                self.forget_idle_names();
            }
            // Only when the state shrank by an eighth since its peak (a flood or a scan expired):
            // trimming at every pass returned pages the next batches took straight back, so RSS
            // dipped and refilled instead of staying flat.
            let now = self.stats.state_bytes;
            if now.saturating_mul(8) < self.state_peak_since_trim.saturating_mul(7) {
                crate::limits::release_free_memory();
                self.state_peak_since_trim = now;
            }
        }
    }

    fn close_window(&mut self, w: i64) -> Vec<Alert> {
        let Some(clock) = self.clock.clone() else {
            return Vec::new();
        };
        let (window_start, window_end) = (clock.start_of(w), clock.start_of(w + 1));
        let mut maps: Vec<(usize, WindowTable)> = self
            .shards
            .iter_mut()
            .enumerate()
            .filter_map(|(s, shard)| {
                let map = shard.windows.remove(&w)?;
                shard.last_window_len = map.len();
                Some((s, map))
            })
            .collect();
        let want_profiles = self.cfg.detect.multivariate.enabled;
        let total: usize = maps.iter().map(|(_, m)| m.len()).sum();
        // One pass in memory order normalises each aggregate and, for the namespace profiles,
        // takes its feature vector while it is in cache. The profiles are then summed in the close's
        // order from these 72-byte vectors, not from the scattered 440-byte aggregates (a second
        // random pass over a million of them per close, and an allocation per vector).
        let mut vectors: Vec<(u64, Vector)> =
            Vec::with_capacity(if want_profiles { total } else { 0 });
        // The aggregates stay where they are; only references are sorted. Members of a group side
        // by side: the group's baseline is looked up once, read while they are scored and folded
        // in right after, while it and their peers are still in cache. (Moving 100k aggregates of
        // 400 bytes into a vector and sorting them was a quarter of a close.) Groups in the order
        // their baselines sit in memory, so the baselines are read in runs, not at random.
        let mut items: Vec<CloseItem<'_>> = Vec::with_capacity(total);
        for (_, map) in &mut maps {
            for (id, agg) in map.iter_mut() {
                agg.normalize();
                let vector = if want_profiles && agg.records_out > 0 {
                    vectors.push((agg.namespace, crate::detect::multivariate::vector(agg)));
                    // Four billion aggregates would not fit in memory: the fallback is moot.
                    u32::try_from(vectors.len() - 1).unwrap_or(NO_VECTOR)
                } else {
                    NO_VECTOR
                };
                items.push(CloseItem {
                    order: self.baselines.locality(agg.group),
                    vector,
                    group: agg.group,
                    id,
                    agg,
                });
            }
        }
        items.sort_unstable_by_key(|c| (c.order, c.group, c.id));
        if let Some(n) = &mut self.open_aggregates {
            *n = n.saturating_sub(items.len());
        }
        let profiles = namespace_profiles(&items, &vectors);
        drop(vectors);
        let ctx = DetectContext {
            window: w,
            window_start,
            window_end,
            cfg: &self.cfg.detect,
            soft: self.score_refs.is_some(),
            cluster: &self.cluster,
            warmup_windows: self.baselines.config().warmup_windows,
            namespace_profiles: &profiles,
        };
        let detectors = &self.detectors;
        let baselines = &self.baselines;
        // Scores a chunk (whole groups), then folds each group into its baseline. A group's members
        // are all scored against its history as it was before this window, whatever the chunking,
        // and groups are disjoint, so threads may fold theirs concurrently.
        let score_chunk = |chunk: &mut [CloseItem<'_>]| -> Scored {
            let mut scored = Scored::default();
            // Whether each workload of the chunk had an anomalous window, for folding it in.
            let mut anomalous = Vec::with_capacity(chunk.len());
            let mut start = 0;
            while start < chunk.len() {
                let group = chunk[start].group;
                let end = start
                    + chunk[start..]
                        .iter()
                        .take_while(|c| c.group == group)
                        .count();
                // The baseline of the group a few items on, before this group's shard is held.
                // As far ahead as the aggregates since the groups come in slot order: half as
                // far left the slot's compare stalled (1M curve: 1.05-1.06 us per record closed
                // against 1.10-1.23).
                if let Some(ahead) = chunk.get(end + PREFETCH_AHEAD) {
                    baselines.prefetch(ahead.group);
                }
                // And the heap behind the slot of one half as far on, asked for above four groups
                // ago (one item a group is the common case), so it has arrived.
                if let Some(ahead) = chunk.get(end + PREFETCH_AHEAD / 2) {
                    baselines.prefetch_heap(ahead.group);
                }
                // One lookup per group: the slot is read while the members are scored, then
                // folded into (a lookup to read and one per member to fold were a tenth of a
                // close at a million workloads). Detectors never look baselines up themselves,
                // so holding the slot's shard is safe.
                let slot = baselines.entry(group);
                {
                    let base = match &slot {
                        dashmap::mapref::entry::Entry::Occupied(o) => Some(o.get()),
                        dashmap::mapref::entry::Entry::Vacant(_) => None,
                    };
                    for i in start..end {
                        // The aggregates are scattered over the shards' maps: ask for the ones a few
                        // items on while this one is scored.
                        if let Some(ahead) = chunk.get(i + PREFETCH_AHEAD) {
                            prefetch::<WindowAggregate>(ahead.agg);
                        }
                        if let Some(ahead) = chunk.get(i + PREFETCH_AHEAD / 2) {
                            prefetch_line(ahead.agg.peers.as_ptr());
                        }
                        let CloseItem { id, agg, .. } = &chunk[i];
                        let before = scored.findings.len();
                        for d in detectors {
                            d.evaluate(&ctx, *id, agg, base, &mut scored.findings);
                        }
                        anomalous.push(scored.findings[before..].iter().any(|f| f.score >= 1.0));
                    }
                }
                let mut baseline = slot.or_default();
                let run = chunk[start..end].iter_mut().zip(&anomalous[start..end]);
                for (CloseItem { agg, .. }, &anomalous) in run {
                    baselines.fold(group, &mut baseline, agg, w, window_start, anomalous);
                    scored.senders += usize::from(agg.records_out > 0);
                    EgressEdge::collect(agg, anomalous, &mut scored.edges);
                    // Freed now, while its blocks are in cache, rather than in one more pass.
                    agg.release_heap();
                }
                start = end;
            }
            scored
        };
        let scored = if self.threads > 1 && items.len() >= PARALLEL_CLOSE_MIN {
            std::thread::scope(|sc| {
                let handles: Vec<_> = group_chunks(&mut items, self.threads)
                    .into_iter()
                    .map(|c| {
                        let score_chunk = &score_chunk;
                        sc.spawn(move || score_chunk(c))
                    })
                    .collect();
                let mut all = Scored::default();
                for h in handles {
                    match h.join() {
                        Ok(part) => all.append(part),
                        Err(p) => std::panic::resume_unwind(p),
                    }
                }
                all
            })
        } else {
            score_chunk(&mut items)
        };
        drop(items);
        for (s, map) in maps {
            self.shards[s].spare = map.recycle();
        }
        let mut findings = scored.findings;
        findings.extend(self.policy.take_findings(w));
        self.cluster.update(
            w,
            scored.senders,
            &scored.edges,
            self.cfg.detect.edge_burst.decay,
            self.cluster_cap,
        );
        // Every 256th window, counted by the checkpointed counter so a restarted daemon expires
        // at the same windows as an uninterrupted one (expiry changes what detectors see).
        if (self.stats.windows_closed + 1) % EXPIRY_EVERY_WINDOWS == 0 {
            let horizon = window_start - self.expire_after_s;
            let horizon_window = horizon.div_euclid(clock.len());
            self.baselines.expire(horizon_window);
            self.cluster.expire(horizon_window);
            self.policy.expire(horizon);
            self.idle_pass_due = true;
        }
        findings.extend(self.enforce_budget(w, window_start, window_end));
        findings.sort_by(|a, b| {
            a.workload
                .cmp(&b.workload)
                .then(a.detector.cmp(b.detector))
                .then(b.score.total_cmp(&a.score))
        });
        self.stats.windows_closed += 1;
        if let Some(refs) = self.score_refs.as_mut().and_then(|r| r.remove(&w)) {
            score_records(&refs, &findings, &mut self.scores);
        }
        let raised = self.alerts.raise(&findings, window_start, window_end);
        for a in &raised {
            self.stats.alerts += 1;
            *self
                .stats
                .alerts_by_detector
                .entry(a.detector.clone())
                .or_default() += 1;
        }
        raised
    }
}

impl Pipeline {
    /// Forgets the names of workloads with no record since the previous pass (see
    /// [`WorkloadRegistry::forget_idle`](crate::flow::WorkloadRegistry::forget_idle)); workloads in an
    /// open window, or with a record held back (future-dated, or waiting for `auto`), keep theirs
    /// whatever their records' age: names make alert ids.
    fn forget_idle_names(&mut self) {
        let held = self
            .future_held
            .iter()
            .map(|h| &h.rec)
            .chain(self.pending.iter().map(|(_, r)| r))
            .flat_map(|r| [r.src.id, r.dst.id]);
        let live: rustc_hash::FxHashSet<WorkloadId> =
            open_workloads(&self.shards).chain(held).collect();
        let forgotten =
            crate::flow::WorkloadRegistry::global().forget_idle(|id| live.contains(&id)) as u64;
        if forgotten > 0 {
            *self
                .stats
                .evictions
                .entry("idle_workload_name".into())
                .or_default() += forgotten;
        }
    }

    /// Checks the `[limits]` budget after window `w` closed: evicts what it must, counts it, and
    /// returns the `cardinality_flood` finding if the window had one.
    fn enforce_budget(&mut self, w: i64, window_start: i64, window_end: i64) -> Option<Finding> {
        let shards = &self.shards;
        let open_ids = || open_workloads(shards).collect();
        let fixed = crate::limits::cluster_bytes(&self.cluster)
            + crate::limits::decoder_cache_bytes(self.threads)
            + self.alerts.estimated_bytes();
        let report = self.budget.close(
            w,
            window_start,
            window_end,
            crate::limits::StateView {
                baselines: &self.baselines,
                open_aggregates: *self
                    .open_aggregates
                    .get_or_insert_with(|| open_aggregate_count(shards)),
                fixed_bytes: fixed,
                open_ids: &open_ids,
            },
        );
        for (kind, n) in [
            ("baseline", report.evicted_baselines),
            ("workload_name", report.evicted_names),
        ] {
            if n > 0 {
                *self.stats.evictions.entry(kind.into()).or_default() += n;
            }
        }
        self.stats.state_bytes = report.state_bytes as u64;
        self.state_peak_since_trim = self.state_peak_since_trim.max(self.stats.state_bytes);
        report.finding
    }
}

/// Workloads with an aggregate in an open window, on any shard.
fn open_workloads(shards: &[Shard]) -> impl Iterator<Item = WorkloadId> + '_ {
    shards
        .iter()
        .flat_map(|s| s.windows.values().flat_map(|m| m.keys()))
}

/// Aggregates held in open windows, over every shard.
fn open_aggregate_count(shards: &[Shard]) -> usize {
    shards
        .iter()
        .flat_map(|s| s.windows.values().map(|m| m.len()))
        .sum()
}

/// The baseline group of a registered workload, as the decoder derives it: pods without their
/// replica-set hash (`shop/frontend`), every other workload itself.
pub fn group_of(id: WorkloadId, info: &crate::flow::WorkloadInfo) -> WorkloadId {
    match crate::flow::decode::group_name(&info.name_aggr) {
        Some(stripped) if info.kind == crate::flow::EndpointType::Wep => {
            let mut key = String::new();
            crate::flow::registry::canonical_key(
                &mut key,
                info.kind,
                &info.namespace,
                stripped,
                None,
            );
            WorkloadId::of_key(&key)
        }
        _ => id,
    }
}

/// Idle expiry (baselines, cluster tables, policy flows, workload names) runs every this many
/// closed windows.
const EXPIRY_EVERY_WINDOWS: u64 = 256;

/// Lines per chunk of an overlapped batch (see `Pipeline::push_overlapped`): small enough that the
/// helpers stay ahead, large enough that handing chunks over costs little.
const OVERLAP_CHUNK: usize = 512;
/// The smallest chunk [`overlap_chunks`] cuts.
const OVERLAP_CHUNK_MIN: usize = 64;

/// Cuts `n` lines into chunks for [`Pipeline::push_overlapped`]: [`OVERLAP_CHUNK`] lines while a
/// quarter of what is left is at least that, then a quarter of what is left, down to
/// [`OVERLAP_CHUNK_MIN`]. The last chunk is ingested after the helpers have run out of work, so
/// small chunks at the end shorten the time the other cores sit idle at the end of every batch.
fn overlap_chunks(n: usize) -> Vec<(usize, usize)> {
    let mut bounds = Vec::with_capacity(n / OVERLAP_CHUNK + 8);
    let mut lo = 0;
    while lo < n {
        let size = ((n - lo) / 4).clamp(OVERLAP_CHUNK_MIN, OVERLAP_CHUNK);
        let hi = (lo + size).min(n);
        bounds.push((lo, hi));
        lo = hi;
    }
    bounds
}

/// The shard that owns workload `id` among `threads`: `id % threads`, without the division when
/// `threads` is a power of two (the aggregation asks six times a record).
#[inline]
fn shard_of(id: WorkloadId, threads: u64) -> usize {
    let s = if threads.is_power_of_two() {
        id.0 & (threads - 1)
    } else {
        id.0 % threads
    };
    s as usize
}

/// Windows with fewer workloads than this are scored on one thread (spawning costs more).
const PARALLEL_CLOSE_MIN: usize = 2048;

/// One aggregate of a closing window, where it lies in its shard's map.
struct CloseItem<'a> {
    /// Where the group's baseline sits ([`BaselineStore::locality`](crate::baseline::BaselineStore::locality)):
    /// the close's first sort key.
    order: u32,
    /// Its feature vector among the close's vectors, [`NO_VECTOR`] when it sent nothing (or the
    /// multivariate detector is off).
    vector: u32,
    /// The workload's group (the baseline it is scored against and folded into).
    group: WorkloadId,
    /// The workload.
    id: WorkloadId,
    agg: &'a mut WindowAggregate,
}

/// A [`CloseItem`] without a feature vector.
const NO_VECTOR: u32 = u32::MAX;

/// Each namespace's sum of its senders' feature vectors, summed in the items' order (group, then
/// workload), so the floating-point sums do not depend on how the aggregates lay in memory.
fn namespace_profiles(
    items: &[CloseItem<'_>],
    vectors: &[(u64, Vector)],
) -> FxHashMap<u64, Profile> {
    let mut profiles: FxHashMap<u64, Profile> = FxHashMap::default();
    for (i, item) in items.iter().enumerate() {
        if let Some(ahead) = items
            .get(i + PREFETCH_AHEAD)
            .and_then(|c| vectors.get(c.vector as usize))
        {
            prefetch(ahead);
        }
        if let Some((namespace, v)) = vectors.get(item.vector as usize) {
            profiles.entry(*namespace).or_default().add(v);
        }
    }
    profiles
}

/// How many items ahead a close asks the memory for aggregates, and how many records ahead
/// aggregation asks for window-table index entries (half as far for aggregates): enough to cover a
/// memory miss with the work on the items in between.
const PREFETCH_AHEAD: usize = 8;

/// What scoring a chunk of a closed window gives: the findings, and what the cluster state folds in
/// after every chunk is done.
#[derive(Default)]
struct Scored {
    findings: Vec<Finding>,
    senders: usize,
    edges: Vec<EgressEdge>,
}

impl Scored {
    /// Appends the next chunk's results.
    fn append(&mut self, mut next: Scored) {
        self.findings.append(&mut next.findings);
        self.senders += next.senders;
        self.edges.append(&mut next.edges);
    }
}

/// Splits aggregates with each group's members side by side into about `parts` chunks of whole groups (a group's members
/// must be scored before any of them is folded into its baseline, so one thread takes them all).
fn group_chunks<'s, 'a>(
    items: &'s mut [CloseItem<'a>],
    parts: usize,
) -> Vec<&'s mut [CloseItem<'a>]> {
    let target = items.len().div_ceil(parts.max(1)).max(1);
    let mut chunks = Vec::with_capacity(parts);
    let mut rest = items;
    while !rest.is_empty() {
        let mut end = target.min(rest.len());
        while end < rest.len() && rest[end].group == rest[end - 1].group {
            end += 1;
        }
        let (chunk, tail) = std::mem::take(&mut rest).split_at_mut(end);
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

/// Lines a future-dated record waits for the input to follow it (a believed jump needs a few hundred
/// agreeing records, see [`crate::window`]) before it is dead-lettered as clock skew.
const FUTURE_WAIT: u64 = 1024;

/// Future-dated records at the end of a finite input processed as its last capture (fewer are
/// dead-lettered as clock skew).
const FUTURE_TAIL_MIN: usize = 32;

/// Batches with fewer records than this are aggregated on the caller's thread.
const PARALLEL_AGGREGATE_MIN: usize = 256;

/// Decodes lines `lo..hi` of `batch` in order onto `out` (line numbers from `first_line`), with
/// the decoder looking each line's workloads up ahead ([`Decoder::decode_each`]).
fn decode_lines(
    dec: &mut Decoder,
    batch: &LineBatch,
    (lo, hi): (usize, usize),
    first_line: u64,
    out: &mut Vec<Decoded>,
) {
    let lines = (lo..hi).map(|i| match batch.lines[i].truncated_len {
        Some(n) => Err(DecodeError::TooLong(n as usize, batch.line(i).len())),
        None => Ok(batch.line(i)),
    });
    let mut line = first_line + lo as u64;
    dec.decode_each(lines, |result| {
        out.push(Decoded { line, result });
        line += 1;
    });
}

/// Gives each record of a closed window the strongest score of the findings that implicate it.
fn score_records(refs: &[ScoreRef], findings: &[Finding], scores: &mut Vec<f32>) {
    let mut by_workload: FxHashMap<WorkloadId, Vec<&Finding>> = FxHashMap::default();
    for f in findings {
        by_workload.entry(f.workload).or_default().push(f);
    }
    for r in refs {
        let mut best = NO_SCORE;
        for (subject, egress) in [(r.src, true), (r.dst, false)] {
            let Some(fs) = by_workload.get(&subject) else {
                continue;
            };
            let peer = if egress { r.dst } else { r.src };
            for f in fs {
                let s = &f.scope;
                if s.egress != egress
                    || (s.denied_only && !r.denied)
                    || (!s.peers.is_empty() && !s.peers.contains(&peer))
                    || (!s.ports.is_empty() && !s.ports.contains(&r.port))
                {
                    continue;
                }
                best = best.max(f.score as f32);
            }
        }
        let idx = r.line as usize;
        if scores.len() <= idx {
            scores.resize(idx + 1, f32::NAN);
        }
        scores[idx] = best;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: i64, src: &str, dst: &str, bytes: u64) -> String {
        format!(
            r#"{{"start_time":{t},"end_time":{},"source_name":"-","source_name_aggr":"{src}-7d9c8b6f4-*","source_namespace":"slice","source_type":"wep","dest_name":"-","dest_name_aggr":"{dst}-*","dest_namespace":"slice","dest_type":"wep","reporter":"src","proto":"tcp","action":"allow","bytes_out":{bytes},"bytes_in":10,"packets_out":1,"packets_in":1,"num_flows":1,"num_flows_started":1,"num_flows_completed":1,"dest_port":80}}"#,
            t + 60
        )
    }

    fn pipeline() -> Pipeline {
        let mut cfg = Config::default();
        cfg.window.length = "60s".into();
        Pipeline::new(Arc::new(cfg), PipelineOptions::default()).expect("pipeline")
    }

    /// A window of 3,000 workloads in 1,000 groups (three replica sets each): more than
    /// [`PARALLEL_CLOSE_MIN`], so two threads score it in chunks of whole groups.
    fn crowded_batch(windows: i64) -> LineBatch {
        let src: Arc<str> = Arc::from("test");
        let mut batch = LineBatch::new();
        for w in 0..windows {
            for i in 0..3000u64 {
                let (group, replica) = (i % 1000, i / 1000);
                // The last window: a tenth of the groups send a thousand times their usual bytes
                // to a peer they never had.
                let burst = w == windows - 1 && group % 10 == 0;
                let (bytes, dst) = if burst {
                    (5_000_000 + i, 900 + group)
                } else {
                    (1000 + (w as u64 * 7 + i) % 300, group % 40)
                };
                let l = format!(
                    r#"{{"start_time":{t},"end_time":{e},"source_name":"-","source_name_aggr":"w{group}-{replica}x7k9-*","source_namespace":"ns{ns}","source_type":"wep","dest_name":"-","dest_name_aggr":"db{dst}-*","dest_namespace":"data","dest_type":"wep","reporter":"src","proto":"tcp","action":"allow","bytes_out":{bytes},"bytes_in":10,"packets_out":1,"packets_in":1,"num_flows":1,"num_flows_started":1,"num_flows_completed":1,"dest_port":5432}}"#,
                    t = w * 60,
                    e = w * 60 + 60,
                    ns = group % 7,
                );
                batch.push_line(&src, l.as_bytes(), 0, 0);
            }
        }
        batch
    }

    #[test]
    fn namespace_profiles_sum_in_item_order_and_skip_workloads_without_a_vector() {
        let mut aggs: Vec<WindowAggregate> = (0..4).map(|_| WindowAggregate::default()).collect();
        // The vectors lie in memory in the reverse of the items' order. Floating-point addition
        // is not associative: 1 + 1e16 - 1e16 is 0 in item order, 1 in memory order.
        let first = |x: f64| {
            let mut v = Vector::default();
            v[0] = x;
            v
        };
        let vectors = vec![
            (7, first(-1e16)),
            (7, first(1e16)),
            (7, first(1.0)),
            (9, first(2.5)),
        ];
        let slots = [2, 1, 0, NO_VECTOR];
        let items: Vec<CloseItem<'_>> = aggs
            .iter_mut()
            .zip(slots)
            .enumerate()
            .map(|(i, (agg, vector))| CloseItem {
                order: 0,
                group: WorkloadId(1),
                id: WorkloadId(i as u64),
                agg,
                vector,
            })
            .collect();
        let profiles = namespace_profiles(&items, &vectors);
        assert_eq!(profiles.len(), 1, "namespace 9's vector belongs to no item");
        let p = &profiles[&7];
        assert_eq!(p.n, 3);
        assert_eq!(p.sum[0], 0.0, "summed in item order");
        assert!(p.sum[1..].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn group_chunks_split_only_between_groups() {
        let mut aggs: Vec<WindowAggregate> = (0..10).map(|_| WindowAggregate::default()).collect();
        let groups = [1u64, 1, 1, 2, 3, 3, 3, 3, 4, 4];
        let mut items: Vec<CloseItem<'_>> = aggs
            .iter_mut()
            .zip(groups)
            .enumerate()
            .map(|(i, (agg, g))| CloseItem {
                order: 0,
                group: WorkloadId(g),
                id: WorkloadId(i as u64),
                agg,
                vector: NO_VECTOR,
            })
            .collect();
        for parts in 1..=4 {
            let chunks = group_chunks(&mut items, parts);
            let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
            assert_eq!(sizes.iter().sum::<usize>(), 10, "{parts}: covered");
            let mut seen = Vec::new();
            for c in &chunks {
                assert!(!c.is_empty());
                assert!(
                    !seen.contains(&c[0].group),
                    "{parts}: group {:?} split",
                    c[0].group
                );
                seen.extend(c.iter().map(|x| x.group));
            }
        }
        assert_eq!(group_chunks(&mut items, 1).len(), 1);
    }

    #[test]
    fn a_crowded_window_closes_the_same_on_one_and_two_threads() {
        let batch = crowded_batch(12);
        // Small batches take the other two-thread path: decoded on both threads, then folded by
        // one thread per shard (a large batch is decoded ahead by a helper and folded in one pass
        // over both shards).
        let src: Arc<str> = Arc::from("test");
        let small: Vec<LineBatch> = (0..batch.len())
            .collect::<Vec<_>>()
            .chunks(500)
            .map(|lines| {
                let mut b = LineBatch::new();
                for &i in lines {
                    b.push_line(&src, batch.line(i), 0, 0);
                }
                b
            })
            .collect();
        let mut outcomes = Vec::new();
        for (threads, batches) in [
            (1, std::slice::from_ref(&batch)),
            (2, std::slice::from_ref(&batch)),
            (2, &small[..]),
        ] {
            let mut cfg = Config::default();
            cfg.window.length = "60s".into();
            let opts = PipelineOptions {
                threads,
                ..PipelineOptions::default()
            };
            let mut p = Pipeline::new(Arc::new(cfg), opts).expect("pipeline");
            let mut alerts = Vec::new();
            for b in batches {
                alerts.extend(p.push(b).expect("push"));
            }
            alerts.extend(p.finish().expect("finish"));
            let alerts: Vec<String> = alerts
                .iter()
                .map(|a| serde_json::to_string(a).expect("alert json"))
                .collect();
            let baselines: Vec<_> = (0..1000)
                .map(|g| p.baseline(WorkloadId::of_key(&format!("ns{}/w{g}", g % 7))))
                .collect();
            assert!(baselines.iter().all(|b| b.is_some()), "every group learned");
            outcomes.push((alerts, baselines));
        }
        assert!(!outcomes[0].0.is_empty(), "the burst window alerts");
        for (k, other) in outcomes.iter().enumerate().skip(1) {
            assert_eq!(outcomes[0].0, other.0, "alerts, run {k}");
            assert!(outcomes[0].1 == other.1, "baselines, run {k}");
        }
    }

    #[test]
    fn records_closed_counts_each_accepted_record_once_when_its_window_closes() {
        let batch = crowded_batch(5);
        let mut p = pipeline();
        p.push(&batch).expect("push");
        let pushed = p.stage_times().records_closed;
        // Windows close as the frontier passes them, the last ones only at the end.
        assert!(
            pushed > 0 && pushed < 15_000,
            "{pushed} closed before the end"
        );
        assert_eq!(pushed % 3000, 0, "whole windows: {pushed}");
        p.finish().expect("finish");
        assert_eq!(p.stage_times().records_closed, 15_000);
        assert!(p.window_records.is_empty(), "nothing left over");
        let later = p.stage_times();
        let earlier = StageTimes {
            records_closed: pushed,
            ..later
        };
        assert_eq!(later.since(&earlier).records_closed, 15_000 - pushed);
    }

    #[test]
    fn overlap_chunks_cover_the_batch_in_order_and_shrink_at_its_end() {
        for n in [0, 1, 63, 64, 1024, 3100, 16384] {
            let bounds = overlap_chunks(n);
            let mut next = 0;
            for &(lo, hi) in &bounds {
                assert_eq!(lo, next, "{n}: contiguous");
                assert!(hi > lo && hi - lo <= OVERLAP_CHUNK, "{n}: {lo}..{hi}");
                next = hi;
            }
            assert_eq!(next, n, "{n}: covered");
        }
        let bounds = overlap_chunks(16384);
        assert_eq!(bounds[0], (0, OVERLAP_CHUNK));
        let (lo, hi) = bounds[bounds.len() - 1];
        assert!(hi - lo <= OVERLAP_CHUNK_MIN);
    }

    #[test]
    fn a_filtered_slice_moves_only_its_workloads_baselines_and_windows() {
        let mut a = pipeline();
        let src: Arc<str> = Arc::from("test");
        let mut batch = LineBatch::new();
        for w in 0..6 {
            batch.push_line(&src, line(w * 60, "moved", "db", 100).as_bytes(), 0, 0);
            batch.push_line(&src, line(w * 60, "stays", "cache", 100).as_bytes(), 0, 0);
        }
        a.push(&batch).expect("push");
        let moved = WorkloadId::of_key("slice/moved-7d9c8b6f4-*");
        let moved_group = WorkloadId::of_key("slice/moved");
        let stays_group = WorkloadId::of_key("slice/stays");
        let seen = a
            .baseline(moved_group)
            .expect("moved baseline")
            .windows_seen;
        assert!(seen > 0);
        assert!(a.baseline(stays_group).is_some());

        let slice = a.snapshot_filtered(&|_, info| info.name_aggr.starts_with("moved"));
        assert_eq!(slice.stats.workloads, 1);
        assert!(slice.baselines.iter().any(|(g, _)| *g == moved_group));
        assert!(slice.baselines.iter().all(|(g, _)| *g != stays_group));
        assert!(
            slice
                .windows
                .iter()
                .all(|(_, items)| items.iter().all(|(id, _)| *id == moved)),
            "only the kept workload's open windows"
        );
        assert!(!slice.windows.is_empty(), "the last window is still open");

        let mut b = pipeline();
        b.merge_snapshot(slice).expect("merge");
        assert_eq!(
            b.baseline(moved_group).map(|x| x.windows_seen),
            Some(seen),
            "no second warm-up"
        );
        assert!(b.baseline(stays_group).is_none());
    }
}
