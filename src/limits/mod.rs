//! State bounds under hostile input (invariant 5): the `[limits]` budget for everything the pipeline
//! keeps per workload, how it is enforced, and the `cardinality_flood` finding.
//!
//! Enforcement is by accounting, not by polling RSS: every kind of state has an estimated size per
//! entry (measured from its structs and heap), and the budget is checked when a window closes.
//! - Within a window, [`admission`] caps how many workloads may hold an aggregate; past the cap only
//!   established workloads get in and the refused record sides are counted (the records still count
//!   as processed, they are never silently lost).
//! - The workload registry (names for alerts) refuses new names past its share of the budget; at
//!   window close, names no state refers to any more are evicted.
//! - When the whole estimate passes [`HIGH_WATER`] of the budget, baselines are evicted down to
//!   [`LOW_WATER`], newest and idlest first (fewest windows of history, then longest idle), so an
//!   established workload goes only when nothing newer is left.
//!
//! Every eviction is counted (`RunStats::evictions`, `flowwarden_evictions_total{kind}`), and a window
//! that brought in a flood of never-seen identities, or made the budget bind, raises one
//! `cardinality_flood` finding naming where the identities came from.

pub mod admission;
pub mod huge_pages;

use crate::alert::Band;
use crate::baseline::{BaselineStore, ClusterState};
use crate::detect::{severity_for, Finding, Scope};
use crate::flow::{FlowRecord, IdMap, WorkloadId, WorkloadRegistry};
use admission::{History, WindowAdmission};
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Fraction of the budget the estimate may reach before baselines are evicted. The estimate counts
/// live bytes; under the churn of a flood (entries evicted and replaced every window, allocations
/// from several worker threads) the allocator's fragmentation and per-thread arenas roughly double
/// the resident set (measured: 1M spoofed identities, 128 MiB budget), and a window's new names and
/// aggregates come on top before the next check; so live state is kept under 30 % of the budget and
/// the process, its own few tens of MiB included, stays under it.
pub const HIGH_WATER: f64 = 0.3;
/// Fraction of the budget eviction brings the estimate back to.
pub const LOW_WATER: f64 = 0.2;
/// Share of the budget for workload names.
const REGISTRY_SHARE: f64 = 1.0 / 32.0;
/// Share of the budget for the aggregates of one open window (when `window_workloads` = 0).
const WINDOW_SHARE: f64 = 0.06;

/// `[limits]` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Memory for per-workload state: baselines, open windows, workload names, cluster tables
    /// (`512MiB`; units B, KiB, MiB, GiB, or KB, MB, GB). The policy ledger's cap is derived from
    /// it too unless set ([`crate::policy_insight::PolicyDriftConfig::max_flows`]).
    pub state_memory: String,
    /// Workloads admitted into one window before only established ones get in; 0 = derived from
    /// `state_memory`.
    pub window_workloads: usize,
    /// Windows of history that make a workload established: it is always admitted and evicted last.
    pub established_windows: u64,
    /// Never-seen workloads in one window that raise a `cardinality_flood` alert (one is also raised
    /// whenever the budget refuses records or evicts state).
    pub flood_new_identities: u64,
    /// Back blocks of 8 MiB and more (the large tables) with transparent huge pages where Linux
    /// allows it ([`huge_pages`]).
    pub huge_pages: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            state_memory: "512MiB".into(),
            window_workloads: 0,
            established_windows: 3,
            flood_new_identities: 50_000,
            huge_pages: true,
        }
    }
}

impl LimitsConfig {
    /// Checks values; errors name the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let b = parse_size(&self.state_memory).map_err(|m| ("limits.state_memory".into(), m))?;
        if b < 16 << 20 {
            return Err((
                "limits.state_memory".into(),
                "must be at least 16MiB".into(),
            ));
        }
        if self.flood_new_identities == 0 {
            return Err((
                "limits.flood_new_identities".into(),
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The budget in bytes.
    pub fn budget_bytes(&self) -> usize {
        parse_size(&self.state_memory).unwrap_or(512 << 20)
    }
}

/// Parses a size such as `512MiB`, `2GiB`, `100MB` or `65536` (bytes).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like \"512MiB\""))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?} (use MiB or GiB)"
            ))
        }
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > usize::MAX as f64 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(v as usize)
}

/// Hash tables double when they grow, so a slot costs up to twice its size: the estimates assume
/// the worst case rather than the 7/8 load of a full table.
pub const SLOT_SLACK: usize = 2;

/// Estimated bytes of one open aggregate: its table entry, plus the heap of a workload with a few
/// peers (distinct counters exact, the peer table's first allocation).
pub fn aggregate_bytes() -> usize {
    crate::window::WindowTable::worst_entry_bytes() + 512
}

/// Estimated bytes of the cluster-wide tables (capped by [`crate::baseline::cluster::table_cap`]).
pub fn cluster_bytes(c: &ClusterState) -> usize {
    let sharers = std::mem::size_of::<crate::baseline::cluster::Sharers>()
        + crate::baseline::cluster::SHARERS_CAP * 8
        + 16;
    (c.dest_sharers.len() + c.port_sharers.len()) * (sharers + 16) * 8 / 7 + 4 * 4 * 4096 * 8 * 3
}

/// Bytes the decoders' per-thread caches of registered workloads may hold: each grows to
/// [`crate::flow::decode::known_room`] entries.
pub fn decoder_cache_bytes(threads: usize) -> usize {
    let entry = IdMap::<(crate::flow::EndpointType, WorkloadId)>::full_entry_bytes() * SLOT_SLACK;
    // One decoder per worker plus the caller's.
    (threads + 1) * crate::flow::decode::known_room() * entry
}

/// Gives a hash map's memory back when under a quarter of its slots are used (after an expiry
/// emptied it), so memory follows the state down after a flood or a scan instead of staying at the
/// high-water mark.
pub fn shrink_if_sparse<K: Eq + std::hash::Hash, V, S: std::hash::BuildHasher>(
    map: &mut std::collections::HashMap<K, V, S>,
) {
    if map.len() * 4 < map.capacity() {
        map.shrink_to_fit();
    }
}

/// Returns memory the allocator holds but no state uses to the operating system (glibc keeps freed
/// memory in its arenas; a daemon whose state shrank after a flood would otherwise keep its peak RSS
/// for good), and the freed large blocks kept for reuse ([`huge_pages::release_kept`]). Called
/// after an idle pass that shrank the state; it costs about a millisecond.
pub fn release_free_memory() {
    huge_pages::release_kept();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims glibc's own heap; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What the budget check reads of the pipeline at window close.
pub struct StateView<'a> {
    /// Baselines (evictable).
    pub baselines: &'a BaselineStore,
    /// Aggregates still held in open windows (after the closing one was removed).
    pub open_aggregates: usize,
    /// Bytes of state the budget cannot evict (cluster tables, decoder caches, open alerts).
    pub fixed_bytes: usize,
    /// Ids that have an open aggregate (their names must stay); called only when names are evicted.
    pub open_ids: &'a dyn Fn() -> FxHashSet<WorkloadId>,
}

/// What one window close did to the state.
#[derive(Debug, Default)]
pub struct CloseReport {
    /// Baselines evicted.
    pub evicted_baselines: u64,
    /// Workload names evicted from the registry.
    pub evicted_names: u64,
    /// Records of the closed window with a side refused by admission.
    pub refused_records: u64,
    /// Estimated state after the check.
    pub state_bytes: usize,
    /// The `cardinality_flood` finding, when the window had a flood or the budget bound.
    pub finding: Option<Finding>,
}

/// The enforced budget (see the module docs).
#[derive(Debug)]
pub struct StateBudget {
    budget: usize,
    window_cap: usize,
    established: u64,
    flood_threshold: u64,
    windows: BTreeMap<i64, WindowAdmission>,
    state_bytes: usize,
    /// Heap bytes of the open windows' admissions, kept up to date as windows close: summing them
    /// at every close was quadratic when a batch spans thousands of sparse windows (IoT-23).
    admission_bytes: usize,
    /// An admission changed since `admission_bytes` was summed.
    admission_dirty: bool,
    /// Registry bytes after a name pass that found nothing to evict: the next pass waits until the
    /// registry has grown past this by [`NAME_PASS_GROWTH`] of its capacity.
    futile_name_pass_at: Option<usize>,
    /// The largest admitted set of a closed window, for the next window to clear and fill.
    spare_admitted: IdMap<()>,
}

/// Share of the registry's capacity it must grow by after a name pass that evicted nothing before
/// another pass runs. With a registry nearly full of workloads that all have baselines or open
/// aggregates, every close rescanned it (2M names, and a set of 4M open ids, per close) to evict
/// nothing.
const NAME_PASS_GROWTH: usize = 64;

impl History for BaselineStore {
    fn windows_seen(&self, group: WorkloadId) -> u64 {
        self.admission_history(group)
    }

    fn prefetch(&self, group: WorkloadId) {
        self.prefetch_admission_history(group);
    }
}

impl StateBudget {
    /// A budget from config; sets the workload registry's capacity.
    pub fn new(cfg: &LimitsConfig) -> Self {
        let budget = cfg.budget_bytes();
        WorkloadRegistry::global().set_capacity((budget as f64 * REGISTRY_SHARE) as usize);
        let window_cap = if cfg.window_workloads > 0 {
            cfg.window_workloads
        } else {
            ((budget as f64 * WINDOW_SHARE) as usize / aggregate_bytes()).max(1024)
        };
        StateBudget {
            budget,
            window_cap,
            established: cfg.established_windows,
            flood_threshold: cfg.flood_new_identities,
            windows: BTreeMap::new(),
            state_bytes: 0,
            admission_bytes: 0,
            admission_dirty: false,
            futile_name_pass_at: None,
            spare_admitted: IdMap::default(),
        }
    }

    /// Workloads admitted per window before only established ones get in.
    pub fn window_cap(&self) -> usize {
        self.window_cap
    }

    /// The budget in bytes.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Estimated state at the last window close.
    pub fn state_bytes(&self) -> usize {
        self.state_bytes
    }

    /// Which sides of `rec` may be aggregated in window `w` (see [`admission`]).
    #[inline]
    pub fn admit(&mut self, w: i64, rec: &FlowRecord, history: &dyn History) -> u8 {
        self.admission_dirty = true;
        let spare = &mut self.spare_admitted;
        self.windows
            .entry(w)
            .or_insert_with(|| WindowAdmission::with_room(std::mem::take(spare)))
            .admit(rec, self.window_cap, self.established, history)
    }

    /// Asks for the slots [`StateBudget::admit`] will look `rec`'s workloads up in, were it in
    /// window `w` (call a few records ahead).
    #[inline]
    pub fn prefetch(&self, w: i64, rec: &FlowRecord) {
        if let Some(a) = self.windows.get(&w) {
            a.prefetch(rec);
        }
    }

    /// Asks `history` for the groups [`StateBudget::admit`] will look up for `rec` in window `w`
    /// (call after [`StateBudget::prefetch`] of the same record, a few records later).
    #[inline]
    pub fn prefetch_history(&self, w: i64, rec: &FlowRecord, history: &dyn History) {
        if let Some(a) = self.windows.get(&w) {
            a.prefetch_history(rec, history);
        }
    }

    /// Enforces the budget after window `w` closed (its aggregates folded into baselines) and reports
    /// what was evicted and whether to raise a flood finding.
    pub fn close(
        &mut self,
        w: i64,
        window_start: i64,
        window_end: i64,
        state: StateView<'_>,
    ) -> CloseReport {
        let admission = self.windows.remove(&w).unwrap_or_default();
        // Admissions of windows that closed without records of their own (none) stay bounded.
        let mut report = CloseReport {
            refused_records: admission.refused_records,
            ..CloseReport::default()
        };
        let reg = WorkloadRegistry::global();
        if self.admission_dirty {
            self.admission_bytes = self.windows.values().map(WindowAdmission::heap_bytes).sum();
            self.admission_dirty = false;
        } else {
            self.admission_bytes = self.admission_bytes.saturating_sub(admission.heap_bytes());
        }
        let admissions = self.admission_bytes + self.spare_admitted.table_bytes();
        let estimate = |b: &BaselineStore| {
            reg.bytes()
                + b.estimated_bytes()
                + state.open_aggregates * aggregate_bytes()
                + admissions
                + state.fixed_bytes
        };
        let mut total = estimate(state.baselines);
        if total as f64 > self.budget as f64 * HIGH_WATER && !state.baselines.is_empty() {
            let target = (self.budget as f64 * LOW_WATER) as usize;
            let baseline_bytes = state.baselines.estimated_bytes();
            let per = (baseline_bytes / state.baselines.len()).max(1);
            let n = (total.saturating_sub(target)).div_ceil(per);
            // Established workloads go only when baselines themselves fill the budget, not to make
            // room for names and open windows a flood brought in.
            let spare_from = if baseline_bytes > target {
                u64::MAX
            } else {
                self.established
            };
            report.evicted_baselines = state.baselines.evict_newest(n, spare_from) as u64;
            total = estimate(state.baselines);
        }
        // Names go when the registry is nearly full or their baselines just went.
        let nearly_full = reg.bytes() as f64 > reg.capacity() as f64 * 0.9;
        let grown = self
            .futile_name_pass_at
            .is_none_or(|at| reg.bytes() > at + reg.capacity() / NAME_PASS_GROWTH);
        if report.evicted_baselines > 0 || (nearly_full && grown) {
            let open = (state.open_ids)();
            let baselines = state.baselines;
            report.evicted_names = reg.evict(|id, info| {
                open.contains(&id)
                    || baselines.windows_seen(crate::pipeline::group_of(id, info)) > 0
            }) as u64;
            self.futile_name_pass_at = (report.evicted_names == 0).then(|| reg.bytes());
            total = estimate(state.baselines);
        }
        self.state_bytes = total;
        report.state_bytes = total;
        tracing::debug!(
            window = w,
            state_bytes = total,
            registry_bytes = reg.bytes(),
            baselines = state.baselines.len(),
            baseline_bytes = state.baselines.estimated_bytes(),
            open_aggregates = state.open_aggregates,
            evicted = report.evicted_baselines,
            "state budget"
        );
        report.finding = self.flood_finding(&admission, &report, window_start, window_end);
        let room = admission.into_room();
        if room.capacity() >= self.spare_admitted.capacity() {
            self.spare_admitted = room;
        }
        report
    }

    fn flood_finding(
        &self,
        a: &WindowAdmission,
        report: &CloseReport,
        window_start: i64,
        window_end: i64,
    ) -> Option<Finding> {
        let bound = a.refused_records > 0 || report.evicted_baselines > 0;
        let ratio = (a.new_identities as f64 / self.flood_threshold as f64).max(if bound {
            1.0
        } else {
            0.0
        });
        if ratio < 1.0 || a.new_identities == 0 {
            return None;
        }
        let (originator, from_originator) = a.originators.top(1).first().copied()?;
        let reg = WorkloadRegistry::global();
        let (kind, of_kind) = a.kinds.top(1).first().copied()?;
        let example = a.examples.get(&kind).copied();
        let share = |n: u64| 100.0 * n as f64 / a.new_identities.max(1) as f64;
        let top_originators: Vec<serde_json::Value> = a
            .originators
            .top(5)
            .into_iter()
            .map(|(id, n)| serde_json::json!({"workload": reg.key(id), "new_identities_at_least": n}))
            .collect();
        let kinds: Vec<serde_json::Value> = a
            .kinds
            .top(5)
            .into_iter()
            .map(|(k, n)| serde_json::json!({"kind": k.describe(), "count_at_least": n}))
            .collect();
        Some(Finding {
            detector: "cardinality_flood",
            workload: originator,
            score: ratio,
            severity: severity_for(ratio, 60),
            feature: "new_identities",
            observed: a.new_identities as f64,
            expected: 0.0,
            band: Band {
                lower: 0.0,
                upper: self.flood_threshold as f64,
            },
            description: format!(
                "{} never-seen identities in one window ({:.0}% {}, e.g. {}); at least {:.0}% of them \
                 came with this workload as the other end; {} records over the state budget were not \
                 aggregated and {} baselines were evicted",
                a.new_identities,
                share(of_kind),
                kind.describe(),
                example.map_or_else(|| "-".to_string(), |id| reg.key(id)),
                share(from_originator),
                a.refused_records,
                report.evicted_baselines
            ),
            evidence: serde_json::json!({
                "new_identities": a.new_identities,
                "admitted_workloads": a.admitted(),
                "window_workload_cap": self.window_cap,
                "refused_records": a.refused_records,
                "refused_sides": a.refused_sides,
                "evicted_baselines": report.evicted_baselines,
                "evicted_names": report.evicted_names,
                "state_bytes": report.state_bytes.max(self.state_bytes),
                "state_budget_bytes": self.budget,
                "top_originators": top_originators,
                "identity_kinds": kinds,
                "window": [window_start, window_end],
            }),
            peer: example,
            dest_port: None,
            scope: Scope {
                egress: false,
                ..Scope::default()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size(" 2 GiB"), Ok(2 << 30));
        assert_eq!(parse_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad = LimitsConfig {
            state_memory: "1MiB".into(),
            ..LimitsConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "limits.state_memory");
        assert!(LimitsConfig::default().validate().is_ok());
    }

    #[test]
    fn the_derived_window_cap_fits_the_budget() {
        let cfg = LimitsConfig::default();
        let cap =
            ((cfg.budget_bytes() as f64 * WINDOW_SHARE) as usize / aggregate_bytes()).max(1024);
        assert!(cap > 20_000, "{cap}");
        assert!(cap * aggregate_bytes() <= cfg.budget_bytes() / 4);
    }
}
