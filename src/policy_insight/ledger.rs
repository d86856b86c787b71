//! [`PolicyLedger`]: for each (side, source workload group, destination group, port, protocol), the
//! policy decision that decided it, when, and how much traffic it carried.
//!
//! The pipeline feeds it every record in input order (the sequential window-assign pass, so the
//! result does not depend on the thread count) and collects its [`Finding`]s when a window closes:
//! - `policy_loosened`: a flow that an established decision denied is now allowed;
//! - `policy_drift`: another policy, tier or rule now decides an established flow (a broad allow in
//!   a higher tier, a profile deciding what a policy used to, a tier now ending what it passed on,
//!   a deny where there was an allow);
//! - `staged_policy_impact`: a staged policy would deny an established, allowed flow.
//!
//! The same entries, with their first/last times and volumes, are the usage history `recommend`
//! turns into least-privilege policies. Memory is bounded by `max_entries`: when full, the eighth of
//! the entries idle longest is evicted (counted). Records older than the current decision's start
//! (out-of-order delivery across nodes) do not flip a decision back. The entries live in a
//! [`KeyedTable`], so the pipeline can ask for a record's entry a few records before it folds it in.

use super::decision::{canonical_policy, Decision};
use super::PolicyDriftConfig;
use crate::alert::Band;
use crate::detect::{Finding, Scope};
use crate::flow::keyed_table::{KeyedTable, TableKey};
use crate::flow::policy::{PolicyKind, RULE_UNKNOWN};
use crate::flow::registry::StringTable;
use crate::flow::{Action, FlowRecord, Reporter, StrId, WorkloadId, WorkloadRegistry};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Detector names of the ledger's findings.
pub const LOOSENED: &str = "policy_loosened";
/// See [`LOOSENED`].
pub const DRIFT: &str = "policy_drift";
/// See [`LOOSENED`].
pub const STAGED_IMPACT: &str = "staged_policy_impact";

/// Changes kept per closing window before further ones are only counted.
const MAX_CHANGES_PER_WINDOW: usize = 10_000;
/// Evidence items listed per finding.
const EVIDENCE_ITEMS: usize = 20;
/// Distinct policy names remembered; beyond it every new name shares one overflow slot.
const MAX_NAMES: usize = 1 << 16;

/// Which flow an entry is about. `ingress` entries come from the destination's records (its
/// ingress policies decided them), the others from the source's (egress policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FlowKey {
    /// Reported by the destination (ingress policy) rather than the source (egress policy).
    pub ingress: bool,
    /// Source workload group.
    pub src: WorkloadId,
    /// Destination workload group.
    pub dst: WorkloadId,
    /// Destination port (0 when aggregated away).
    pub port: u16,
    /// IP protocol number.
    pub proto: u8,
}

/// The index keys a flow by a 64-bit mix of its fields.
impl TableKey for FlowKey {
    #[inline]
    fn table_hash(&self) -> WorkloadId {
        use crate::flow::id_map::MIX;
        let small =
            u64::from(self.port) << 16 | u64::from(self.proto) << 1 | u64::from(self.ingress);
        let h = (self.src.0.wrapping_mul(MIX) ^ self.dst.0)
            .rotate_left(29)
            .wrapping_mul(MIX)
            ^ small;
        let h = h.wrapping_mul(MIX);
        WorkloadId(h ^ (h >> 29))
    }
}

/// A decision with the policy name as an index into the ledger's name table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Hit {
    name: u32,
    kind: PolicyKind,
    action: Action,
    rule: i32,
}

impl Hit {
    fn same_as(&self, o: &Hit) -> bool {
        self.name == o.name
            && self.action == o.action
            && (self.rule == o.rule || self.rule == RULE_UNKNOWN || o.rule == RULE_UNKNOWN)
    }
}

/// What the ledger remembers of one flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The latest workload id of the reporting side (with its replica-set hash, for names).
    pub subject: WorkloadId,
    /// The latest workload id of the other side.
    pub peer: WorkloadId,
    current: Hit,
    /// Start time of the first record with the current decision.
    since: i64,
    /// Records under the current decision.
    current_records: u64,
    /// The decision before the current one: (hit, since, last seen).
    previous: Option<(Hit, i64, i64)>,
    /// First and last record start time.
    pub first_seen: i64,
    /// See `first_seen`.
    pub last_seen: i64,
    /// Allowed records, connections and bytes (both directions).
    pub allowed_records: u64,
    /// See `allowed_records`.
    pub allowed_connections: u64,
    /// See `allowed_records`.
    pub allowed_bytes: u64,
    /// Distinct windows with an allowed record.
    pub allowed_windows: u32,
    /// First and last start time of an allowed record (0 when none).
    pub first_allowed: i64,
    /// See `first_allowed`.
    pub last_allowed: i64,
    last_allowed_window: i64,
    /// Denied records.
    pub denied_records: u64,
    /// Staged policy (name index + 1) already reported as cutting this flow.
    staged_reported: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangeKind {
    Loosened,
    Drift,
    Staged,
}

/// One change seen while a window was open.
#[derive(Debug, Clone)]
struct Change {
    kind: ChangeKind,
    key: FlowKey,
    subject: WorkloadId,
    peer: WorkloadId,
    /// (decision, since, last seen, records) before.
    before: Option<(Hit, i64, i64, u64)>,
    after: Hit,
    at: i64,
}

/// The ledger's state in a checkpoint or model (names resolved, entries sorted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyLedgerState {
    names: Vec<String>,
    entries: Vec<(FlowKey, Entry)>,
    evictions: u64,
}

/// Worst-case bytes of one remembered flow: its table entry and its place in the eviction list.
pub fn flow_bytes() -> usize {
    KeyedTable::<FlowKey, Entry>::worst_entry_bytes() + std::mem::size_of::<(i64, FlowKey)>()
}

/// The per-flow policy ledger (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct PolicyLedger {
    cfg: PolicyDriftConfig,
    /// Flows held at most ([`PolicyDriftConfig::max_flows`]).
    cap: usize,
    entries: KeyedTable<FlowKey, Entry>,
    names: Vec<String>,
    name_index: FxHashMap<String, u32>,
    /// Decoder string id → name index (a cache; string ids are per process).
    by_str_id: FxHashMap<StrId, u32>,
    changes: BTreeMap<i64, Vec<Change>>,
    evictions: u64,
    dropped_changes: u64,
    /// `evict`'s (last seen, key) list, kept between passes: at 200k entries it is 8 MB, and
    /// allocating it afresh faulted its pages in at every pass (a sixth of the ledger's time at 1M
    /// workloads).
    evict_scratch: Vec<(i64, FlowKey)>,
}

/// A flow as `recommend` and reports see it: key, names and usage.
#[derive(Debug, Clone)]
pub struct FlowUsage {
    /// The flow.
    pub key: FlowKey,
    /// Usage and times.
    pub entry: Entry,
    /// Its current decision.
    pub decision: Decision,
}

impl PolicyLedger {
    /// An empty ledger under a `limits.state_memory` budget of `state_memory` bytes.
    pub fn new(cfg: &PolicyDriftConfig, state_memory: usize) -> Self {
        PolicyLedger {
            cfg: cfg.clone(),
            cap: cfg.max_flows(state_memory),
            ..Self::default()
        }
    }

    /// Takes new settings, keeping what it remembers (a smaller cap evicts at the next new flow).
    pub fn reconfigure(&mut self, cfg: &PolicyDriftConfig, state_memory: usize) {
        self.cfg = cfg.clone();
        self.cap = cfg.max_flows(state_memory);
    }

    /// Flows remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries evicted because the ledger was full.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Changes not reported because a window had too many.
    pub fn dropped_changes(&self) -> u64 {
        self.dropped_changes
    }

    fn name_of(&mut self, id: StrId) -> u32 {
        if let Some(&n) = self.by_str_id.get(&id) {
            return n;
        }
        let canon = canonical_policy(&StringTable::global().resolve(id));
        let n = self.intern_name(canon);
        if self.by_str_id.len() >= MAX_NAMES {
            self.by_str_id.clear();
        }
        self.by_str_id.insert(id, n);
        n
    }

    fn intern_name(&mut self, canon: String) -> u32 {
        if let Some(&n) = self.name_index.get(&canon) {
            return n;
        }
        if self.names.len() >= MAX_NAMES {
            return 0; // the overflow slot (names[0] is "(other)")
        }
        if self.names.is_empty() {
            self.names.push("(other)".into());
        }
        self.names.push(canon.clone());
        let n = (self.names.len() - 1) as u32;
        self.name_index.insert(canon, n);
        n
    }

    fn decision(&self, h: &Hit) -> Decision {
        Decision {
            policy: self.names.get(h.name as usize).cloned().unwrap_or_default(),
            kind: h.kind,
            action: h.action,
            rule: h.rule,
        }
    }

    /// The flow `rec` is about, when the ledger folds it in.
    #[inline]
    fn key_of(&self, rec: &FlowRecord) -> Option<FlowKey> {
        (self.cfg.enabled && rec.deciding_policy != 0).then(|| FlowKey {
            ingress: rec.reporter == Reporter::Dst,
            src: rec.src.group,
            dst: rec.dst.group,
            port: rec.dst.port.unwrap_or(0),
            proto: rec.proto.0,
        })
    }

    /// Asks for the index slot of `rec`'s flow, a few records before [`PolicyLedger::observe`]
    /// (see [`KeyedTable`]).
    #[inline]
    pub fn prefetch_index(&self, rec: &FlowRecord) {
        if let Some(key) = self.key_of(rec) {
            self.entries.prefetch_index(&key);
        }
    }

    /// Asks for the entry of `rec`'s flow, after [`PolicyLedger::prefetch_index`].
    #[inline]
    pub fn prefetch_entry(&self, rec: &FlowRecord) {
        if let Some(key) = self.key_of(rec) {
            self.entries.prefetch_entry(&key);
        }
    }

    /// Folds one record in; `window` is the window the pipeline assigned it to.
    pub fn observe(&mut self, rec: &FlowRecord, window: i64) {
        let Some(key) = self.key_of(rec) else {
            return;
        };
        let (subject, peer) = if key.ingress {
            (rec.dst.id, rec.src.id)
        } else {
            (rec.src.id, rec.dst.id)
        };
        let action = match rec.deciding_action {
            Action::Allow | Action::Deny => rec.deciding_action,
            _ => rec.action,
        };
        let hit = Hit {
            name: self.name_of(rec.deciding_policy),
            kind: rec.deciding_kind,
            action,
            rule: rec.deciding_rule,
        };
        let staged = (self.cfg.staged_impact
            && rec.pending_policy != 0
            && rec.action == Action::Allow
            && rec.pending_action == Action::Deny)
            .then(|| Hit {
                name: self.name_of(rec.pending_policy),
                kind: rec.pending_kind,
                action: rec.pending_action,
                rule: rec.pending_rule,
            });
        if self.entries.len() >= self.cap.max(1) && !self.entries.contains_key(&key) {
            self.evict();
        }
        let min_records = self.cfg.min_records;
        let t = rec.start_time;
        let Some(e) = self.entries.get_or_insert_with(key, || Entry {
            subject,
            peer,
            current: hit,
            since: t,
            current_records: 0,
            previous: None,
            first_seen: t,
            last_seen: t,
            allowed_records: 0,
            allowed_connections: 0,
            allowed_bytes: 0,
            allowed_windows: 0,
            first_allowed: 0,
            last_allowed: 0,
            last_allowed_window: i64::MIN,
            denied_records: 0,
            staged_reported: 0,
        }) else {
            // Another flow holds this key's hash (see `keyed_table`): skipped, not mixed with it.
            metrics::counter!("flowwarden_policy_ledger_hash_collisions_total").increment(1);
            return;
        };
        e.subject = subject;
        e.peer = peer;
        let mut change = None;
        if e.current.same_as(&hit) {
            e.current_records += 1;
            if e.current.rule == RULE_UNKNOWN {
                e.current.rule = hit.rule;
            }
        } else if t > e.since {
            // A record older than the current decision is a late one from before the change.
            let established = e.current_records >= min_records;
            let before = (e.current, e.since, e.last_seen, e.current_records);
            e.previous = Some((e.current, e.since, e.last_seen));
            e.current = hit;
            e.since = t;
            e.current_records = 1;
            if established {
                let kind = if before.0.action == Action::Deny && hit.action == Action::Allow {
                    ChangeKind::Loosened
                } else {
                    ChangeKind::Drift
                };
                change = Some(Change {
                    kind,
                    key,
                    subject,
                    peer,
                    before: Some(before),
                    after: hit,
                    at: t,
                });
            }
        }
        e.last_seen = e.last_seen.max(t);
        let mut staged_change = None;
        if let Some(s) = staged {
            if e.allowed_records >= min_records && e.staged_reported != s.name + 1 {
                e.staged_reported = s.name + 1;
                let before = (
                    e.current,
                    e.first_allowed,
                    e.last_allowed,
                    e.allowed_records,
                );
                staged_change = Some(Change {
                    kind: ChangeKind::Staged,
                    key,
                    subject,
                    peer,
                    before: Some(before),
                    after: s,
                    at: t,
                });
            }
        }
        if rec.action == Action::Allow {
            e.allowed_records += 1;
            e.allowed_connections += rec.num_flows.max(rec.num_flows_started);
            e.allowed_bytes += rec.bytes_in + rec.bytes_out;
            if e.first_allowed == 0 {
                e.first_allowed = t;
            }
            e.last_allowed = e.last_allowed.max(t);
            if e.last_allowed_window != window {
                e.last_allowed_window = window;
                e.allowed_windows += 1;
            }
        } else {
            e.denied_records += 1;
        }
        for c in [change, staged_change].into_iter().flatten() {
            self.push_change(window, c);
        }
    }

    fn push_change(&mut self, window: i64, c: Change) {
        let list = self.changes.entry(window).or_default();
        if list.len() >= MAX_CHANGES_PER_WINDOW {
            self.dropped_changes += 1;
            return;
        }
        list.push(c);
    }

    /// Forgets flows last seen before `cutoff` (seconds), as `baseline.expire_after` forgets idle
    /// workloads: a flow idle that long is no longer "established", and keeping it would grow the
    /// ledger with every workload that came and went. Returns how many went.
    pub fn expire(&mut self, cutoff: i64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.last_seen >= cutoff);
        if self.evict_scratch.capacity() > self.entries.capacity() {
            self.evict_scratch = Vec::new();
        }
        before - self.entries.len()
    }

    /// Evicts the eighth of the entries idle longest (ties by key, so the choice is deterministic).
    fn evict(&mut self) {
        let mut idle = std::mem::take(&mut self.evict_scratch);
        idle.clear();
        idle.extend(self.entries.iter().map(|(k, e)| (e.last_seen, *k)));
        let n = (idle.len() / 8).max(1).min(idle.len());
        idle.select_nth_unstable(n - 1);
        // Keys are unique, so exactly the `n` pairs up to the `n`th go.
        let last_evicted = idle[n - 1];
        self.entries.retain(|k, e| (e.last_seen, *k) > last_evicted);
        self.evict_scratch = idle;
        self.evictions += n as u64;
        metrics::counter!("flowwarden_policy_ledger_evictions_total").increment(n as u64);
    }

    /// The findings of the changes seen in windows up to `window` (call when it closes): one per
    /// (detector, workload), listing every changed flow.
    pub fn take_findings(&mut self, window: i64) -> Vec<Finding> {
        let later = self.changes.split_off(&(window + 1));
        let due = std::mem::replace(&mut self.changes, later);
        let mut grouped: BTreeMap<(&'static str, WorkloadId), Vec<Change>> = BTreeMap::new();
        for c in due.into_values().flatten() {
            let detector = match c.kind {
                ChangeKind::Loosened => LOOSENED,
                ChangeKind::Drift => DRIFT,
                ChangeKind::Staged => STAGED_IMPACT,
            };
            grouped.entry((detector, c.subject)).or_default().push(c);
        }
        grouped
            .into_iter()
            .map(|((detector, subject), changes)| self.finding(detector, subject, changes))
            .collect()
    }

    fn finding(
        &self,
        detector: &'static str,
        subject: WorkloadId,
        changes: Vec<Change>,
    ) -> Finding {
        let reg = WorkloadRegistry::global();
        let first = &changes[0];
        let before = first.before.map(|b| self.decision(&b.0));
        let after = self.decision(&first.after);
        let direction = if first.key.ingress {
            format!("ingress from {}", reg.key(first.peer))
        } else {
            format!("egress to {}", reg.key(first.peer))
        };
        let flow = format!(
            "{direction} on {}/{}",
            crate::flow::Proto(first.key.proto).name(),
            first.key.port
        );
        let before_text = before
            .as_ref()
            .map_or_else(|| "nothing".to_string(), Decision::describe);
        let more = if changes.len() > 1 {
            format!(" (and {} more flows)", changes.len() - 1)
        } else {
            String::new()
        };
        let (description, severity, score) = match detector {
            LOOSENED => (
                format!(
                    "policy loosened: {flow} was denied by {before_text} and is now allowed by {}{more}",
                    after.describe()
                ),
                75,
                2.0,
            ),
            DRIFT => {
                let tier_changed = before.as_ref().is_some_and(|b| b.tier() != after.tier());
                let what = if tier_changed {
                    "another tier now decides"
                } else {
                    "another policy now decides"
                };
                (
                    format!(
                        "policy drift: {what} {flow}: was {before_text}, now {}{more}",
                        after.describe()
                    ),
                    if tier_changed { 50 } else { 40 },
                    1.0,
                )
            }
            _ => (
                format!(
                    "staged policy {} would deny {flow}, allowed today by {before_text}{more}",
                    after.describe()
                ),
                20,
                1.0,
            ),
        };
        let items: Vec<serde_json::Value> = changes
            .iter()
            .take(EVIDENCE_ITEMS)
            .map(|c| {
                let mut v = serde_json::json!({
                    "direction": if c.key.ingress { "ingress" } else { "egress" },
                    "source": reg.key(if c.key.ingress { c.peer } else { c.subject }),
                    "destination": reg.key(if c.key.ingress { c.subject } else { c.peer }),
                    "port": c.key.port,
                    "proto": crate::flow::Proto(c.key.proto).name(),
                });
                if let Some((hit, since, last, records)) = c.before {
                    v["before"] = self.decision(&hit).to_json();
                    v["before"]["first_seen"] = since.into();
                    v["before"]["last_seen"] = last.into();
                    v["before"]["records"] = records.into();
                }
                let label = if c.kind == ChangeKind::Staged {
                    "staged"
                } else {
                    "after"
                };
                v[label] = self.decision(&c.after).to_json();
                v[label]["first_seen"] = c.at.into();
                v
            })
            .collect();
        let mut ports: Vec<u16> = changes.iter().map(|c| c.key.port).collect();
        ports.sort_unstable();
        ports.dedup();
        let mut peers: Vec<WorkloadId> = changes.iter().map(|c| c.peer).collect();
        peers.sort_unstable();
        peers.dedup();
        Finding {
            detector,
            workload: subject,
            score,
            severity,
            feature: "deciding_policy",
            observed: changes.len() as f64,
            expected: 0.0,
            band: Band {
                lower: 0.0,
                upper: 0.0,
            },
            description,
            evidence: serde_json::json!({
                "flows_changed": changes.len(),
                "changes": items,
            }),
            peer: Some(first.peer),
            dest_port: Some(first.key.port),
            scope: Scope {
                egress: !first.key.ingress,
                peers,
                ports,
                denied_only: false,
            },
        }
    }

    /// Every flow with its usage and current decision, sorted by key.
    pub fn flows(&self) -> Vec<FlowUsage> {
        let mut v: Vec<FlowUsage> = self
            .entries
            .iter()
            .map(|(k, e)| FlowUsage {
                key: *k,
                entry: e.clone(),
                decision: self.decision(&e.current),
            })
            .collect();
        v.sort_by_key(|f| f.key);
        v
    }

    /// The state for a checkpoint or model.
    pub fn snapshot(&self) -> PolicyLedgerState {
        let mut entries: Vec<(FlowKey, Entry)> =
            self.entries.iter().map(|(k, e)| (*k, e.clone())).collect();
        entries.sort_by_key(|(k, _)| *k);
        PolicyLedgerState {
            names: self.names.clone(),
            entries,
            evictions: self.evictions,
        }
    }

    /// Replaces the state with a snapshot's.
    pub fn restore(&mut self, s: PolicyLedgerState) {
        self.names = s.names;
        self.name_index = self
            .names
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        self.by_str_id.clear();
        self.entries = s.entries.into_iter().collect();
        self.evictions = s.evictions;
        self.changes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Decoder;

    /// The default `limits.state_memory`.
    const BUDGET: usize = 512 << 20;

    fn cfg() -> PolicyDriftConfig {
        PolicyDriftConfig {
            min_records: 2,
            ..PolicyDriftConfig::default()
        }
    }

    /// A dst-reported record of loadgen → payment:50051 at `t` with the given policies.
    fn rec(dec: &mut Decoder, t: i64, action: &str, enforced: &str, pending: &str) -> FlowRecord {
        let line = format!(
            r#"{{"start_time":{t},"end_time":{},"source_name_aggr":"loadgen-5f6d7c8b9-*","source_namespace":"shop","source_type":"wep","dest_name_aggr":"payment-6b7c8d9f5-*","dest_namespace":"shop","dest_type":"wep","dest_port":50051,"proto":"tcp","action":"{action}","reporter":"dst","policies":{{"enforced_policies":["0|security|security.threat-feeds|pass|2","{enforced}"],"pending_policies":[{pending}]}},"num_flows":3,"bytes_in":100,"bytes_out":50}}"#,
            t + 300
        );
        dec.decode(line.as_bytes()).expect("test line decodes")
    }

    #[test]
    fn flows_idle_past_the_cutoff_are_forgotten() {
        let mut dec = Decoder::default();
        let mut l = PolicyLedger::new(&cfg(), BUDGET);
        let allow = "1|platform|gnp:platform.allow-shop|allow|0";
        l.observe(&rec(&mut dec, 0, "allow", allow, ""), 0);
        assert_eq!(l.len(), 1);
        assert_eq!(l.expire(0), 0, "last seen at the cutoff: kept");
        assert_eq!(l.expire(1), 1);
        assert!(l.is_empty());
    }

    #[test]
    fn a_deny_that_becomes_an_allow_is_loosened_naming_both_policies() {
        let mut dec = Decoder::default();
        let mut l = PolicyLedger::new(&cfg(), BUDGET);
        let deny = "1|default|shop/knp.default.default-deny|deny|-1";
        let allow = "1|platform|gnp:platform.allow-debug-all|allow|0";
        for w in 0..3 {
            l.observe(&rec(&mut dec, w * 300, "deny", deny, ""), w);
            assert!(l.take_findings(w).is_empty(), "steady: no finding");
        }
        l.observe(&rec(&mut dec, 900, "allow", allow, ""), 3);
        // A late record from before the change does not flip it back.
        l.observe(&rec(&mut dec, 600, "deny", deny, ""), 3);
        l.observe(&rec(&mut dec, 1200, "allow", allow, ""), 4);
        let f = l.take_findings(3);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].detector, LOOSENED);
        assert!(
            f[0].description.contains("shop/default-deny"),
            "{}",
            f[0].description
        );
        assert!(
            f[0].description.contains("allow-debug-all"),
            "{}",
            f[0].description
        );
        let ev = &f[0].evidence["changes"][0];
        assert_eq!(ev["before"]["action"], "deny");
        assert_eq!(ev["before"]["first_seen"], 0);
        assert_eq!(ev["after"]["policy"], "allow-debug-all");
        assert_eq!(ev["after"]["first_seen"], 900);
        assert!(l.take_findings(4).is_empty());
    }

    #[test]
    fn shapes_of_one_policy_and_unknown_rules_are_no_drift() {
        let mut dec = Decoder::default();
        let mut l = PolicyLedger::new(&cfg(), BUDGET);
        let shapes = [
            "1|default|shop/default.allow-payment|allow",
            "1|default|np:shop/default.allow-payment|allow|1",
            "1|default|shop/default.allow-payment|allow|1",
        ];
        for w in 0..9 {
            l.observe(
                &rec(&mut dec, w * 300, "allow", shapes[w as usize % 3], ""),
                w,
            );
            assert!(l.take_findings(w).is_empty());
        }
        // A different policy in another tier deciding is drift.
        let profile = "1|__PROFILE__|__PROFILE__.kns.shop|allow";
        l.observe(&rec(&mut dec, 9 * 300, "allow", profile, ""), 9);
        let f = l.take_findings(9);
        assert_eq!((f.len(), f[0].detector), (1, DRIFT));
        assert!(
            f[0].description.contains("another tier"),
            "{}",
            f[0].description
        );
    }

    #[test]
    fn a_staged_deny_on_established_traffic_is_reported_once() {
        let mut dec = Decoder::default();
        let mut l = PolicyLedger::new(&cfg(), BUDGET);
        let allow = "1|default|shop/default.allow-payment|allow|0";
        let staged = "\"0|default|staged:shop/default.default-deny|deny|-1\"";
        for w in 0..6 {
            l.observe(&rec(&mut dec, w * 300, "allow", allow, staged), w);
        }
        let f: Vec<Finding> = (0..6).flat_map(|w| l.take_findings(w)).collect();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].detector, STAGED_IMPACT);
        assert_eq!(f[0].evidence["changes"][0]["staged"]["kind"], "snp");
    }

    /// A ledger holding at most `max_entries`.
    fn capped(max_entries: usize) -> PolicyLedger {
        PolicyLedger::new(
            &PolicyDriftConfig {
                max_entries,
                ..cfg()
            },
            BUDGET,
        )
    }

    /// An allowed egress record at time `t` from one workload to the internet on `port`.
    fn egress(dec: &mut Decoder, t: i64, port: u16) -> FlowRecord {
        let line = format!(
            r#"{{"start_time":{t},"end_time":{t},"source_name_aggr":"a-*","source_namespace":"x","source_type":"wep","dest_name_aggr":"pub","dest_type":"net","dest_port":{port},"proto":"tcp","action":"allow","reporter":"src","policies":{{"all_policies":["0|default|x/default.p|allow|0"]}}}}"#
        );
        dec.decode(line.as_bytes()).expect("decodes")
    }

    #[test]
    fn the_cap_evicts_and_counts() {
        let mut dec = Decoder::default();
        let mut l = capped(8);
        for p in 0..40u16 {
            l.observe(&egress(&mut dec, i64::from(p), 1000 + p), 0);
        }
        assert!(l.len() <= 8);
        assert!(l.evictions() >= 32);
        assert_eq!(
            l.evictions() as usize + l.len(),
            40,
            "every eviction counted"
        );
        let snap = l.snapshot();
        let mut back = PolicyLedger::new(&cfg(), BUDGET);
        back.restore(snap.clone());
        assert_eq!(back.snapshot(), snap);
    }

    #[test]
    fn eviction_takes_the_longest_idle_and_the_lowest_keys_among_ties() {
        let mut dec = Decoder::default();
        let mut l = capped(64);
        // Three entries idle longest (time 0), the rest tied at time 1 in scrambled port order:
        // the eighth of 64 that goes is those three and the five lowest keys of the tied.
        for (i, port) in (0..64u16).map(|i| (i, 1000 + (i * 37) % 64)) {
            let t = i64::from(i >= 3);
            l.observe(&egress(&mut dec, t, port), 0);
        }
        let mut before: Vec<(i64, FlowKey)> =
            l.entries.iter().map(|(k, e)| (e.last_seen, *k)).collect();
        before.sort();
        l.observe(&egress(&mut dec, 2, 5000), 0);
        let mut kept: Vec<FlowKey> = l.entries.iter().map(|(k, _)| *k).collect();
        kept.sort();
        let mut want: Vec<FlowKey> = before[8..].iter().map(|(_, k)| *k).collect();
        want.extend(l.entries.iter().map(|(k, _)| k).filter(|k| k.port == 5000));
        want.sort();
        assert_eq!(kept, want);
        assert_eq!(l.evictions(), 8);
    }
}
