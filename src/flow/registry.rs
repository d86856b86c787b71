//! Workload identity: stable integer ids for workload keys, and the registry that maps them back to
//! names and labels for alerts.
//!
//! A [`WorkloadId`] is the xxh3 hash of the workload's canonical key (`ns/name_aggr`, `hep:host`,
//! `ns:name`, `pub:IP`, ...). Hashing the key rather than numbering keys in arrival order keeps every
//! sketch, sort and alert id identical whatever the thread count or input order (invariant 1), and lets
//! the hot path compare integers. The registry is written once per new workload per decoder thread.
//!
//! The registry is bounded (invariant 5): it counts the bytes its entries hold, refuses new entries
//! past a capacity set from the state budget (`[limits]`), and the budget evicts entries no state refers
//! to any more. Ids are hashes, so evicting an entry only loses the workload's display name: alerts
//! then show `workload-<hex id>` until the workload is registered again.

use crate::flow::EndpointType;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Stable id of a workload: xxh3-64 of its canonical key.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct WorkloadId(pub u64);

impl WorkloadId {
    /// The id of a canonical key.
    pub fn of_key(key: &str) -> Self {
        WorkloadId(xxhash_rust::xxh3::xxh3_64(key.as_bytes()))
    }
}

/// The hash a namespace is compared by ([`crate::flow::Endpoint::namespace`], the aggregates'
/// `namespace`): one definition for the decoder that sets it and the detectors that compare with it.
pub fn namespace_hash(namespace: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(namespace.as_bytes())
}

/// What the registry knows about a workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadInfo {
    /// Canonical key, e.g. `shop/frontend-7d9c8b6f4-*` or `pub:81.2.254.224`.
    pub key: String,
    /// Endpoint kind.
    pub kind: EndpointType,
    /// Namespace (`-` when not namespaced).
    pub namespace: String,
    /// Aggregated name (`frontend-7d9c8b6f4-*`, host name, network-set name, `pub`, `pvt`).
    pub name_aggr: String,
    /// Labels from the first record that named them (`k=v`).
    pub labels: Vec<String>,
}

impl WorkloadInfo {
    /// Approximate bytes one registry entry holds: map slot, `Arc` header, struct and strings.
    pub fn entry_bytes(&self) -> usize {
        let strings = self.key.capacity()
            + self.namespace.capacity()
            + self.name_aggr.capacity()
            + self.labels.capacity() * std::mem::size_of::<String>()
            + self.labels.iter().map(String::capacity).sum::<usize>();
        // DashMap slot (id + pointer + control byte), counted twice: tables double when they grow.
        let slot = (std::mem::size_of::<(WorkloadId, Arc<WorkloadInfo>)>() + 1) * 2;
        slot + 16 + std::mem::size_of::<WorkloadInfo>() + strings
    }

    /// Whether the workload is outside the cluster on a public network.
    pub fn is_public(&self) -> bool {
        self.kind == EndpointType::Net && self.name_aggr == "pub"
    }
}

/// Builds the canonical key of a workload into `out`.
///
/// Pods: `namespace/name_aggr`; host endpoints: `hep:host`; network sets: `ns:[namespace/]name`;
/// other networks: `pub` / `pvt`, plus `:IP` when the record keeps the address.
pub fn canonical_key(
    out: &mut String,
    kind: EndpointType,
    namespace: &str,
    name_aggr: &str,
    ip: Option<&str>,
) {
    out.clear();
    let namespaced = !namespace.is_empty() && namespace != "-";
    match kind {
        EndpointType::Wep => {
            if namespaced {
                out.push_str(namespace);
                out.push('/');
            }
            out.push_str(name_aggr);
        }
        EndpointType::Hep => {
            out.push_str("hep:");
            out.push_str(name_aggr);
        }
        EndpointType::Ns => {
            out.push_str("ns:");
            if namespaced {
                out.push_str(namespace);
                out.push('/');
            }
            out.push_str(name_aggr);
        }
        EndpointType::Net => {
            out.push_str(if name_aggr.is_empty() || name_aggr == "-" {
                "pub"
            } else {
                name_aggr
            });
            if let Some(ip) = ip {
                out.push(':');
                out.push_str(ip);
            }
        }
    }
}

/// One registry entry: the workload's info and the generation it was last registered in.
#[derive(Debug)]
struct Slot {
    info: Arc<WorkloadInfo>,
    /// [`WorkloadRegistry::generation`] when a decoder last registered the workload.
    touched: AtomicU64,
}

/// Process-wide map from [`WorkloadId`] to [`WorkloadInfo`], bounded in bytes.
#[derive(Debug)]
pub struct WorkloadRegistry {
    map: DashMap<WorkloadId, Slot>,
    /// Bytes held by the entries (see [`WorkloadInfo::entry_bytes`]).
    bytes: AtomicUsize,
    /// New entries are refused while `bytes` is at or above this.
    capacity: AtomicUsize,
    /// Registrations refused because the registry was full.
    refused: AtomicU64,
    /// Bumped whenever names are dropped and at every idle pass, so decoders drop their caches of
    /// what they registered and register (touch) each workload again with its next record.
    generation: AtomicU64,
}

impl Default for WorkloadRegistry {
    fn default() -> Self {
        WorkloadRegistry {
            map: DashMap::new(),
            bytes: AtomicUsize::new(0),
            capacity: AtomicUsize::new(usize::MAX),
            refused: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }
}

impl WorkloadRegistry {
    /// The process-wide registry.
    pub fn global() -> &'static WorkloadRegistry {
        static REG: OnceLock<WorkloadRegistry> = OnceLock::new();
        REG.get_or_init(WorkloadRegistry::default)
    }

    /// Marks a registered workload as seen in this generation when registering it again would
    /// change nothing: it is present, and it has labels or `labelled` is false (a record without
    /// labels cannot add any). `false` when the caller must [`register`](Self::register) it from
    /// the full record. Lets a decoder whose own cache forgot a workload stay on its hot path.
    pub fn touch(&self, id: WorkloadId, labelled: bool) -> bool {
        match self.map.get(&id) {
            Some(e) if !labelled || !e.info.labels.is_empty() => {
                e.touched.store(self.generation(), Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// Registers a workload unless known; labels fill in when first seen non-empty. A new workload
    /// is refused (counted, not stored) while the registry is at its capacity.
    pub fn register(&self, id: WorkloadId, make: impl FnOnce() -> WorkloadInfo) {
        let generation = self.generation();
        if let Some(existing) = self.map.get(&id) {
            existing.touched.store(generation, Ordering::Relaxed);
            if !existing.info.labels.is_empty() {
                return;
            }
        } else if self.bytes.load(Ordering::Relaxed) >= self.capacity.load(Ordering::Relaxed) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let info = make();
        let size = info.entry_bytes();
        match self.map.entry(id) {
            dashmap::mapref::entry::Entry::Occupied(mut e) => {
                if e.get().info.labels.is_empty() && !info.labels.is_empty() {
                    let old = e.get().info.entry_bytes();
                    e.insert(Slot {
                        info: Arc::new(info),
                        touched: AtomicU64::new(generation),
                    });
                    let _ = self
                        .bytes
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                            Some((b + size).saturating_sub(old))
                        });
                }
            }
            dashmap::mapref::entry::Entry::Vacant(e) => {
                e.insert(Slot {
                    info: Arc::new(info),
                    touched: AtomicU64::new(generation),
                });
                self.bytes.fetch_add(size, Ordering::Relaxed);
            }
        }
    }

    /// Sets the capacity in bytes past which new workloads are refused (`usize::MAX`: unbounded).
    pub fn set_capacity(&self, bytes: usize) {
        self.capacity.store(bytes, Ordering::Relaxed);
    }

    /// The capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Bytes held by the entries.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Registrations refused so far because the registry was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Drops every entry `keep` says no to; returns how many were dropped.
    pub fn evict(&self, keep: impl Fn(WorkloadId, &WorkloadInfo) -> bool) -> usize {
        let dropped = self.retain(|id, slot| keep(id, &slot.info));
        if dropped > 0 {
            self.generation.fetch_add(1, Ordering::Release);
        }
        // No shrink here: under a flood this runs every window and the table keeps its slots for
        // the next names. The idle pass (`forget_idle`, every 256 windows) shrinks it.
        dropped
    }

    /// The idle pass: drops the names no decoder registered during the last two generations unless
    /// `keep` says otherwise, then starts a new generation: every decoder forgets what it
    /// registered, so each workload still active registers, and so keeps, its name with its next
    /// record. Two generations, so a record decoded just before the previous pass, whose window has
    /// not closed yet, keeps its name, and so another pipeline in the same process (as in tests)
    /// does not take names from under one mid-batch. Deploy churn mints pod names for ever
    /// (`frontend-7d9c8b6f4-*`, then `frontend-5f6b9c7d8-*`), so names kept while anything refers
    /// to their group would grow memory without end. Shrinks the table when mostly empty. Returns
    /// how many names went.
    pub fn forget_idle(&self, keep: impl Fn(WorkloadId) -> bool) -> usize {
        let current = self.generation();
        let dropped =
            self.retain(|id, slot| slot.touched.load(Ordering::Relaxed) + 1 >= current || keep(id));
        self.generation.fetch_add(1, Ordering::Release);
        if self.map.len() * 4 < self.map.capacity() {
            self.map.shrink_to_fit();
        }
        dropped
    }

    /// Keeps the entries `keep` says yes to, keeping the byte count right; returns how many went.
    fn retain(&self, keep: impl Fn(WorkloadId, &Slot) -> bool) -> usize {
        let (mut dropped, mut freed) = (0usize, 0usize);
        self.map.retain(|id, slot| {
            let k = keep(*id, slot);
            if !k {
                dropped += 1;
                freed += slot.info.entry_bytes();
            }
            k
        });
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(freed))
            });
        dropped
    }

    /// Evictions and idle passes so far: a decoder whose cache of registered workloads is from an
    /// older generation clears it (a dropped name must be registered again).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Looks a workload up.
    pub fn get(&self, id: WorkloadId) -> Option<Arc<WorkloadInfo>> {
        self.map.get(&id).map(|r| Arc::clone(&r.value().info))
    }

    /// The workload's key, or its id in hex when unknown (never panics).
    pub fn key(&self, id: WorkloadId) -> String {
        self.get(id)
            .map(|i| i.key.clone())
            .unwrap_or_else(|| format!("workload-{:016x}", id.0))
    }

    /// Workloads of one namespace, sorted by key.
    pub fn in_namespace(&self, ns: &str) -> Vec<Arc<WorkloadInfo>> {
        let mut v: Vec<_> = self
            .map
            .iter()
            .filter(|e| e.value().info.namespace == ns)
            .map(|e| Arc::clone(&e.value().info))
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    /// Number of workloads registered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All registered workloads (for snapshots).
    pub fn snapshot(&self) -> Vec<(WorkloadId, WorkloadInfo)> {
        let mut v: Vec<_> = self
            .map
            .iter()
            .map(|e| (*e.key(), (*e.value().info).clone()))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    /// Restores workloads from a snapshot.
    pub fn restore(&self, items: impl IntoIterator<Item = (WorkloadId, WorkloadInfo)>) {
        for (id, info) in items {
            self.register(id, || info);
        }
    }
}

/// Process-wide string interner for the few strings a record keeps (services, domains, processes,
/// policies). Id 0 is "none".
#[derive(Debug, Default)]
pub struct StringTable {
    ids: DashMap<Box<str>, u32>,
    strings: std::sync::RwLock<Vec<Arc<str>>>,
}

impl StringTable {
    /// The process-wide table.
    pub fn global() -> &'static StringTable {
        static TABLE: OnceLock<StringTable> = OnceLock::new();
        TABLE.get_or_init(|| StringTable {
            ids: DashMap::new(),
            strings: std::sync::RwLock::new(vec![Arc::from("")]),
        })
    }

    /// Interns `s` (empty and `-` map to 0).
    pub fn intern(&self, s: &str) -> u32 {
        if s.is_empty() || s == "-" {
            return 0;
        }
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        *self.ids.entry(Box::from(s)).or_insert_with(|| {
            let mut strings = self.strings.write().unwrap_or_else(|p| p.into_inner());
            strings.push(Arc::from(s));
            (strings.len() - 1) as u32
        })
    }

    /// The string of an id ("" for 0 or unknown).
    pub fn resolve(&self, id: u32) -> Arc<str> {
        let strings = self.strings.read().unwrap_or_else(|p| p.into_inner());
        strings
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_the_label_files() {
        let mut s = String::new();
        canonical_key(
            &mut s,
            EndpointType::Wep,
            "lan-192-168-100",
            "host113-*",
            None,
        );
        assert_eq!(s, "lan-192-168-100/host113-*");
        canonical_key(&mut s, EndpointType::Net, "-", "pub", Some("81.2.254.224"));
        assert_eq!(s, "pub:81.2.254.224");
        canonical_key(&mut s, EndpointType::Net, "-", "pvt", None);
        assert_eq!(s, "pvt");
        canonical_key(&mut s, EndpointType::Hep, "-", "node-1", None);
        assert_eq!(s, "hep:node-1");
    }

    #[test]
    fn ids_are_stable_and_interning_round_trips() {
        assert_eq!(WorkloadId::of_key("a/b-*"), WorkloadId::of_key("a/b-*"));
        assert_ne!(WorkloadId::of_key("a/b-*"), WorkloadId::of_key("a/c-*"));
        let t = StringTable::global();
        let id = t.intern("shop/cart:http");
        assert_ne!(id, 0);
        assert_eq!(t.intern("shop/cart:http"), id);
        assert_eq!(&*t.resolve(id), "shop/cart:http");
        assert_eq!(t.intern("-"), 0);
    }

    fn info(key: &str) -> WorkloadInfo {
        WorkloadInfo {
            key: key.into(),
            kind: EndpointType::Wep,
            namespace: "shop".into(),
            name_aggr: key.into(),
            labels: vec!["app=x".into()],
        }
    }

    #[test]
    fn idle_names_go_after_two_passes_without_a_registration() {
        let reg = WorkloadRegistry::default();
        let (old, active, live) = (WorkloadId(1), WorkloadId(2), WorkloadId(3));
        for id in [old, active, live] {
            reg.register(id, || info(&format!("w{}", id.0)));
        }
        let bytes = reg.bytes();
        // First pass: everything was registered in this generation.
        assert_eq!(reg.forget_idle(|_| false), 0);
        assert_eq!(reg.generation(), 1);
        // `active` has a record (its decoder re-registers after the generation moved).
        reg.register(active, || info("w2"));
        assert_eq!(
            reg.forget_idle(|_| false),
            0,
            "one idle generation is spared"
        );
        reg.register(active, || info("w2"));
        // Third pass: `old` and `live` had no record for two generations; `live` is in an open
        // window, so it stays.
        assert_eq!(reg.forget_idle(|id| id == live), 1);
        assert!(reg.get(old).is_none());
        assert!(reg.get(active).is_some() && reg.get(live).is_some());
        assert_eq!(reg.key(old), format!("workload-{:016x}", 1));
        assert!(reg.bytes() < bytes);
        // A forgotten workload that comes back registers again.
        reg.register(old, || info("w1"));
        assert_eq!(reg.key(old), "w1");
    }
}
