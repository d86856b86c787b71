//! Per-window admission: which workloads may hold an aggregate in one open window, and who brought
//! the never-seen ones in.
//!
//! Decided in the pipeline's sequential assign pass (input order), so the outcome is the same on any
//! number of threads (invariant 1). Up to `cap` workloads enter a window freely; past that only
//! *established* workloads (with a history of several windows) still get in, and the sides of records
//! naming anyone else are refused and counted. Every never-seen workload is attributed to the other
//! end of the record that introduced it (a victim flooded by spoofed sources, a workload contacting
//! invented peers) and to its kind, in small heavy-hitter tables, so the flood alert can name them.

use crate::flow::{Endpoint, EndpointType, FlowRecord, IdMap, WorkloadId};
use rustc_hash::FxHashMap;

/// Entries a heavy-hitter table keeps (Misra-Gries: any key with more than `1/HITTERS` of the
/// stream is in it).
const HITTERS: usize = 16;

/// Approximate most-frequent keys of a stream in constant memory (Misra-Gries summary: counts are
/// lower bounds, off by at most `total / HITTERS`).
#[derive(Debug, Clone)]
pub struct HeavyHitters<K: Copy + Eq + std::hash::Hash + Ord> {
    counts: FxHashMap<K, u64>,
    total: u64,
}

impl<K: Copy + Eq + std::hash::Hash + Ord> Default for HeavyHitters<K> {
    fn default() -> Self {
        HeavyHitters {
            counts: FxHashMap::default(),
            total: 0,
        }
    }
}

impl<K: Copy + Eq + std::hash::Hash + Ord> HeavyHitters<K> {
    /// Counts one occurrence of `k`.
    pub fn add(&mut self, k: K) {
        self.total += 1;
        if let Some(c) = self.counts.get_mut(&k) {
            *c += 1;
            return;
        }
        if self.counts.len() < HITTERS {
            self.counts.insert(k, 1);
            return;
        }
        self.counts.retain(|_, c| {
            *c -= 1;
            *c > 0
        });
    }

    /// Occurrences counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The `n` most frequent keys with their (lower-bound) counts, most frequent first.
    pub fn top(&self, n: usize) -> Vec<(K, u64)> {
        let mut v: Vec<(K, u64)> = self.counts.iter().map(|(k, c)| (*k, *c)).collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

/// What kind of identity a never-seen workload is (the flood's pattern).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentityKind {
    /// A pod workload (random pod or controller names).
    Pod,
    /// A host endpoint.
    Host,
    /// A network set.
    NetworkSet,
    /// A public address (spoofed sources look like this).
    PublicAddress,
    /// A private address outside any endpoint.
    PrivateAddress,
}

impl IdentityKind {
    /// Of an endpoint.
    pub fn of(ep: &Endpoint) -> Self {
        match ep.kind {
            EndpointType::Wep => IdentityKind::Pod,
            EndpointType::Hep => IdentityKind::Host,
            EndpointType::Ns => IdentityKind::NetworkSet,
            EndpointType::Net if ep.public => IdentityKind::PublicAddress,
            EndpointType::Net => IdentityKind::PrivateAddress,
        }
    }

    /// Words for the alert.
    pub fn describe(self) -> &'static str {
        match self {
            IdentityKind::Pod => "pod workloads",
            IdentityKind::Host => "host endpoints",
            IdentityKind::NetworkSet => "network sets",
            IdentityKind::PublicAddress => "public addresses",
            IdentityKind::PrivateAddress => "private addresses",
        }
    }
}

/// Admission state of one open window.
#[derive(Debug, Default)]
pub struct WindowAdmission {
    /// Workloads admitted (an [`IdMap`]: two probes per record, each a cache miss at a million
    /// workloads with a `HashSet`'s separate control bytes).
    admitted: IdMap<()>,
    /// Workloads with no history at all that appeared in the window.
    pub new_identities: u64,
    /// Record sides refused because the window was full.
    pub refused_sides: u64,
    /// Records with at least one side refused.
    pub refused_records: u64,
    /// The other end of each never-seen workload's first record.
    pub originators: HeavyHitters<WorkloadId>,
    /// Kinds of the never-seen workloads, with one example each.
    pub kinds: HeavyHitters<IdentityKind>,
    /// One example identity per kind (the first seen).
    pub examples: FxHashMap<IdentityKind, WorkloadId>,
}

/// Bit of [`WindowAdmission::admit`]'s result: fold the record into the source's aggregate.
pub const SOURCE_SIDE: u8 = 1;
/// Bit: fold the record into the destination's aggregate.
pub const DESTINATION_SIDE: u8 = 2;

/// What the admission check needs to know about a workload's history.
pub trait History {
    /// Windows of history of a workload group (0 when none); past `limits.established_windows` it
    /// may say just that many, all the check compares with.
    fn windows_seen(&self, group: WorkloadId) -> u64;

    /// Starts loading what [`History::windows_seen`] of `group` will read (a few records ahead).
    fn prefetch(&self, _group: WorkloadId) {}
}

impl WindowAdmission {
    /// An empty admission that fills `room` (a closed window's set, cleared), so a window of a
    /// million workloads does not grow a new set and fault its pages in again.
    pub fn with_room(mut room: IdMap<()>) -> Self {
        room.clear();
        WindowAdmission {
            admitted: room,
            ..WindowAdmission::default()
        }
    }

    /// The admitted set's room, for the next window.
    pub fn into_room(self) -> IdMap<()> {
        self.admitted
    }

    /// Workloads admitted so far.
    pub fn admitted(&self) -> usize {
        self.admitted.len()
    }

    /// Decides which sides of `rec` may be aggregated; returns a mask of [`SOURCE_SIDE`] and
    /// [`DESTINATION_SIDE`]. `established` is the history (in windows) from which a workload always
    /// gets in.
    #[inline]
    pub fn admit(
        &mut self,
        rec: &FlowRecord,
        cap: usize,
        established: u64,
        history: &dyn History,
    ) -> u8 {
        let mut mask = 0;
        if self.admit_side(&rec.src, &rec.dst, cap, established, history) {
            mask |= SOURCE_SIDE;
        }
        if rec.dst.id == rec.src.id
            || self.admit_side(&rec.dst, &rec.src, cap, established, history)
        {
            mask |= DESTINATION_SIDE;
        }
        if mask != SOURCE_SIDE | DESTINATION_SIDE {
            self.refused_records += 1;
        }
        mask
    }

    /// Asks for the admission-set slots of `rec`'s two workloads.
    #[inline]
    pub fn prefetch(&self, rec: &FlowRecord) {
        self.admitted.prefetch(rec.src.id);
        self.admitted.prefetch(rec.dst.id);
    }

    /// Asks `history` for the groups of `rec`'s workloads not yet admitted, whose first sight will
    /// look their history up. Call after [`WindowAdmission::prefetch`] had time to bring the set's
    /// slots in.
    #[inline]
    pub fn prefetch_history(&self, rec: &FlowRecord, history: &dyn History) {
        for ep in [&rec.src, &rec.dst] {
            if !self.admitted.contains(ep.id) {
                history.prefetch(ep.group);
            }
        }
    }

    #[inline]
    fn admit_side(
        &mut self,
        ep: &Endpoint,
        other: &Endpoint,
        cap: usize,
        established: u64,
        history: &dyn History,
    ) -> bool {
        if self.admitted.contains(ep.id) {
            return true;
        }
        // First sight in this window: a history lookup, once per workload and window.
        let seen = history.windows_seen(ep.group);
        if seen == 0 {
            self.new_identities += 1;
            self.originators.add(other.id);
            let kind = IdentityKind::of(ep);
            self.kinds.add(kind);
            self.examples.entry(kind).or_insert(ep.id);
        }
        if self.admitted.len() < cap || seen >= established {
            self.admitted.insert(ep.id, ());
            true
        } else {
            self.refused_sides += 1;
            false
        }
    }

    /// Estimated bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.admitted.table_bytes() + 2048
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Action, Reporter};

    struct NoHistory(FxHashMap<WorkloadId, u64>);
    impl History for NoHistory {
        fn windows_seen(&self, g: WorkloadId) -> u64 {
            self.0.get(&g).copied().unwrap_or(0)
        }
    }

    fn ep(id: u64, kind: EndpointType, public: bool) -> Endpoint {
        Endpoint {
            id: WorkloadId(id),
            group: WorkloadId(id),
            kind,
            namespace: 0,
            ip: None,
            port: None,
            public,
        }
    }

    fn rec(src: Endpoint, dst: Endpoint) -> FlowRecord {
        FlowRecord {
            src,
            dst,
            action: Action::Allow,
            reporter: Reporter::Src,
            ..FlowRecord::default()
        }
    }

    #[test]
    fn past_the_cap_only_established_workloads_get_in_and_the_flood_is_attributed() {
        let victim = ep(1, EndpointType::Wep, false);
        let history = NoHistory(
            [(WorkloadId(1), 50), (WorkloadId(2), 50)]
                .into_iter()
                .collect(),
        );
        let mut a = WindowAdmission::default();
        for i in 0..100u64 {
            let m = a.admit(
                &rec(ep(1000 + i, EndpointType::Net, true), victim),
                10,
                3,
                &history,
            );
            // The victim (established) always gets in; spoofed sources only while there is room.
            assert_ne!(m & DESTINATION_SIDE, 0);
            assert_eq!(m & SOURCE_SIDE != 0, i < 9, "source {i}");
        }
        let m = a.admit(
            &rec(ep(2, EndpointType::Wep, false), victim),
            10,
            3,
            &history,
        );
        assert_eq!(
            m,
            SOURCE_SIDE | DESTINATION_SIDE,
            "established peers still admitted"
        );
        assert_eq!(a.new_identities, 100);
        assert_eq!(a.refused_sides, 91);
        assert_eq!(a.refused_records, 91);
        assert_eq!(a.originators.top(1), vec![(WorkloadId(1), 100)]);
        assert_eq!(a.kinds.top(1)[0].0, IdentityKind::PublicAddress);
    }

    /// Remembers which groups it was asked to prefetch.
    #[derive(Default)]
    struct AskedHistory(std::cell::RefCell<Vec<WorkloadId>>);
    impl History for AskedHistory {
        fn windows_seen(&self, _: WorkloadId) -> u64 {
            0
        }
        fn prefetch(&self, g: WorkloadId) {
            self.0.borrow_mut().push(g);
        }
    }

    #[test]
    fn only_workloads_not_yet_admitted_have_their_history_asked_for() {
        let history = AskedHistory::default();
        let mut a = WindowAdmission::default();
        let admitted = ep(1, EndpointType::Wep, false);
        a.admit(&rec(admitted, admitted), 10, 3, &history);
        a.prefetch_history(&rec(admitted, ep(2, EndpointType::Wep, false)), &history);
        assert_eq!(history.0.borrow().as_slice(), &[WorkloadId(2)]);
    }

    #[test]
    fn heavy_hitters_keep_the_dominant_key() {
        let mut h = HeavyHitters::default();
        for i in 0..10_000u64 {
            h.add(if i % 3 == 0 { 7 } else { i });
        }
        assert_eq!(h.top(1)[0].0, 7);
        assert_eq!(h.total(), 10_000);
        assert!(h.counts.len() <= HITTERS);
    }
}
