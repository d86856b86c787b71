//! [`KeyedTable`]: entries by a key with a 64-bit hash, laid out so a loop over a batch can ask
//! for an entry before it gets there (the policy ledger's flows, the cluster's destinations, an
//! open window's aggregates).
//!
//! At a million workloads these tables hold hundreds of thousands of keys, far more than the
//! cache, and a `HashMap` look-up missed twice (control bytes, then the bucket) on every record. Here
//! an [`IdMap`] from the key's 64-bit hash to a position sits in front of a dense vector of
//! entries: [`KeyedTable::prefetch_index`] starts the first miss a few records ahead and
//! [`KeyedTable::prefetch_entry`] the second, once the index slot has arrived.
//!
//! Two keys whose hashes are equal cannot both be held: the second is refused
//! ([`KeyedTable::get_or_insert_with`] returns `None`), so the caller skips that record rather than
//! mix two keys. With 64-bit hashes of a few hundred thousand keys that is about one chance in a
//! hundred million per table; a key that is its own hash (a group id) never collides.
//!
//! Removal keeps the vector dense and rebuilds the index ([`KeyedTable::retain`]): the tables
//! remove in bulk (an eighth at an eviction, the idle at an expiry), and one pass over a dense
//! vector costs less than a scattered removal per entry.

use super::id_map::{prefetch, IdMap};
use super::WorkloadId;

/// A key a [`KeyedTable`] can hold: its 64-bit hash picks its index slot.
pub trait TableKey: Copy + Eq {
    /// The key's 64-bit hash (the key itself when it is one already).
    fn table_hash(&self) -> WorkloadId;
}

/// A key that is its own 64-bit hash: two such keys never share an index slot, so a table of them
/// never refuses one ([`KeyedTable::entry`]).
pub trait OwnHash: TableKey {}

/// A workload or group id's raw value: already an xxh3 hash, and its own index key.
impl TableKey for u64 {
    #[inline]
    fn table_hash(&self) -> WorkloadId {
        WorkloadId(*self)
    }
}
impl OwnHash for u64 {}

impl TableKey for WorkloadId {
    #[inline]
    fn table_hash(&self) -> WorkloadId {
        *self
    }
}
impl OwnHash for WorkloadId {}

/// Entries `E` by key `K` (see the module doc).
#[derive(Debug, Clone)]
pub struct KeyedTable<K, E> {
    /// Hash of the key → position in `entries`.
    index: IdMap<u32>,
    entries: Vec<(K, E)>,
}

impl<K, E> Default for KeyedTable<K, E> {
    fn default() -> Self {
        KeyedTable {
            index: IdMap::default(),
            entries: Vec::new(),
        }
    }
}

impl<K: TableKey, E> KeyedTable<K, E> {
    /// An empty table with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        KeyedTable {
            index: IdMap::with_capacity(n),
            entries: Vec::with_capacity(n),
        }
    }

    /// Bytes of one entry at worst: its index slot at the index's fullest load and its place in
    /// the vector, both doubled because both double when they grow.
    pub const fn worst_entry_bytes() -> usize {
        (IdMap::<u32>::full_entry_bytes() + std::mem::size_of::<(K, E)>())
            * crate::limits::SLOT_SLACK
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The position of `key`'s entry, if held.
    #[inline]
    fn position(&self, key: &K) -> Option<usize> {
        let pos = self.index.get(key.table_hash())? as usize;
        (self.entries.get(pos)?.0 == *key).then_some(pos)
    }

    /// Whether `key` is held.
    #[inline]
    pub fn contains_key(&self, key: &K) -> bool {
        self.position(key).is_some()
    }

    /// `key`'s entry, if held.
    #[inline]
    pub fn get(&self, key: &K) -> Option<&E> {
        self.position(key).map(|pos| &self.entries[pos].1)
    }

    /// `key`'s entry, inserting `make()` first when absent; `None` when another key with the same
    /// hash is held (see the module doc).
    #[inline]
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> E) -> Option<&mut E> {
        let next = self.entries.len() as u32;
        let (held, _) = self.index.entry(key.table_hash(), next);
        match held {
            Some(pos) => {
                let (k, e) = self.entries.get_mut(pos as usize)?;
                (*k == key).then_some(e)
            }
            None => {
                self.entries.push((key, make()));
                self.entries.last_mut().map(|(_, e)| e)
            }
        }
    }

    /// Keeps the entries `keep` says yes to, in their order, and rebuilds the index. A table
    /// emptied to under a quarter gives its room back, as the maps it replaced did (an expiry).
    pub fn retain(&mut self, keep: impl FnMut(&K, &E) -> bool) {
        self.retain_and(keep, true);
    }

    /// [`KeyedTable::retain`] that keeps the room, for a cap's prune: a table cut to half its cap
    /// fills up again, and giving its room back made it grow again, on fresh pages, every time.
    pub fn retain_keeping_room(&mut self, keep: impl FnMut(&K, &E) -> bool) {
        self.retain_and(keep, false);
    }

    fn retain_and(&mut self, mut keep: impl FnMut(&K, &E) -> bool, give_back: bool) {
        let before = self.entries.len();
        self.entries.retain(|(k, e)| keep(k, e));
        if self.entries.len() == before {
            return;
        }
        if give_back && self.entries.len() * 4 < self.entries.capacity() {
            self.entries.shrink_to_fit();
        }
        if give_back && self.index.capacity() > 4 * self.entries.len().max(16) {
            self.index = IdMap::with_capacity(self.entries.len());
        } else {
            self.index.clear();
        }
        self.rebuild_index();
    }

    /// Indexes every entry again, into an empty index.
    fn rebuild_index(&mut self) {
        // Entries are read in order but land on scattered slots: ask for the slot of the entry
        // eight on while inserting this one (an eviction at a million workloads rebuilds 175k).
        const AHEAD: usize = 8;
        for (k, _) in self.entries.iter().take(AHEAD) {
            self.index.prefetch(k.table_hash());
        }
        for pos in 0..self.entries.len() {
            if let Some((ahead, _)) = self.entries.get(pos + AHEAD) {
                self.index.prefetch(ahead.table_hash());
            }
            self.index
                .insert(self.entries[pos].0.table_hash(), pos as u32);
        }
    }

    /// Every entry, in insertion order (less what was removed).
    pub fn iter(&self) -> impl Iterator<Item = (&K, &E)> + '_ {
        self.entries.iter().map(|(k, e)| (k, e))
    }

    /// Every entry, in insertion order, mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut E)> + '_ {
        self.entries.iter_mut().map(|(k, e)| (&*k, e))
    }

    /// The entries, in insertion order.
    pub fn into_entries(self) -> Vec<(K, E)> {
        self.entries
    }

    /// Entries the vector holds room for.
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Bytes of the index and the vector (their room, not just what is used), without the
    /// entries' own heap.
    pub fn table_bytes(&self) -> usize {
        self.index.table_bytes() + self.entries.capacity() * std::mem::size_of::<(K, E)>()
    }

    /// Empties the table, keeping its room.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.index.clear();
    }

    /// Grows room to at least `n` entries, exactly: doubling a reused table's vector to fit a
    /// little more than it held would leave half of it unused.
    pub fn reserve_total(&mut self, n: usize) {
        self.entries
            .reserve_exact(n.saturating_sub(self.entries.len()));
        self.index.reserve(n);
    }

    /// Asks for the cache line of `key`'s index slot (the first of a look-up's two misses).
    #[inline]
    pub fn prefetch_index(&self, key: &K) {
        self.index.prefetch(key.table_hash());
    }

    /// Asks for `key`'s entry (the second miss); its index slot should have been asked for a few
    /// records earlier, or this look-up stalls on it.
    #[inline]
    pub fn prefetch_entry(&self, key: &K) {
        let Some(pos) = self.index.get(key.table_hash()) else {
            return;
        };
        if let Some(slot) = self.entries.get(pos as usize) {
            prefetch(slot);
        }
    }
}

impl<K: OwnHash, E: Default> KeyedTable<K, E> {
    /// `key`'s entry, created by `E::default()` when absent. A key that is its own hash shares
    /// its slot with no other key, so unlike [`KeyedTable::get_or_insert_with`] nothing is refused
    /// and the held key needs no comparison.
    #[inline]
    pub fn entry(&mut self, key: K) -> &mut E {
        let next = self.entries.len();
        // Tables hold at most a few million entries (the admission cap, the table caps).
        match self.index.entry(key.table_hash(), next as u32).0 {
            Some(pos) => &mut self.entries[pos as usize].1,
            None => {
                self.entries.push((key, E::default()));
                &mut self.entries[next].1
            }
        }
    }
}

/// Equal when they hold the same keys with equal entries, whatever their order.
impl<K: TableKey, E: PartialEq> PartialEq for KeyedTable<K, E> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, e)| other.get(k) == Some(e))
    }
}

impl<K: TableKey, E> FromIterator<(K, E)> for KeyedTable<K, E> {
    fn from_iter<I: IntoIterator<Item = (K, E)>>(iter: I) -> Self {
        let mut t = KeyedTable::default();
        for (k, e) in iter {
            // A snapshot holds each key once; a repeated key keeps its first entry.
            let _ = t.get_or_insert_with(k, || e);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy_insight::ledger::FlowKey;

    fn key(port: u16) -> FlowKey {
        FlowKey {
            ingress: port % 2 == 0,
            src: WorkloadId(7),
            dst: WorkloadId(u64::from(port) * 1_000_003),
            port,
            proto: 6,
        }
    }

    #[test]
    fn holds_each_key_once_and_keeps_order_through_removal() {
        let mut t: KeyedTable<FlowKey, u32> = KeyedTable::default();
        t.prefetch_index(&key(1));
        t.prefetch_entry(&key(1));
        for p in 0..1000u16 {
            *t.get_or_insert_with(key(p), || 0).expect("no collision") += 1;
        }
        for p in (0..1000u16).step_by(3) {
            *t.get_or_insert_with(key(p), || 100).expect("held") += 1;
        }
        assert_eq!(t.len(), 1000);
        assert!(t.contains_key(&key(999)) && !t.contains_key(&key(1000)));
        t.retain(|k, &v| k.port % 3 == 0 && v == 2);
        let kept: Vec<u16> = t.iter().map(|(k, _)| k.port).collect();
        assert_eq!(kept, (0..1000u16).step_by(3).collect::<Vec<_>>());
        for p in 0..1000u16 {
            assert_eq!(t.contains_key(&key(p)), p % 3 == 0, "port {p}");
            t.prefetch_index(&key(p));
            t.prefetch_entry(&key(p));
        }
        t.retain(|_, _| false);
        assert!(t.is_empty() && !t.contains_key(&key(0)));
        *t.get_or_insert_with(key(5), || 9).expect("inserts") += 1;
        assert_eq!(t.iter().map(|(_, v)| *v).collect::<Vec<_>>(), vec![10]);
    }

    #[test]
    fn a_key_whose_hash_another_holds_is_refused_not_merged() {
        let mut t: KeyedTable<FlowKey, u32> = KeyedTable::default();
        *t.get_or_insert_with(key(1), || 1).expect("inserts") += 0;
        // Make key(2)'s hash point at key(1)'s entry, as a 64-bit collision would.
        let pos = t.index.get(key(1).table_hash()).expect("indexed");
        t.index.insert(key(2).table_hash(), pos);
        assert!(t.get_or_insert_with(key(2), || 2).is_none());
        assert!(!t.contains_key(&key(2)));
        assert_eq!(t.len(), 1);
        assert_eq!(t.get_or_insert_with(key(1), || 3).copied(), Some(1));
    }

    #[test]
    fn a_cap_prune_keeps_the_room_and_an_expiry_gives_it_back() {
        let fill = |t: &mut KeyedTable<u64, u32>| {
            for k in 1..=10_000u64 {
                t.entry(k);
            }
        };
        let mut pruned: KeyedTable<u64, u32> = KeyedTable::default();
        fill(&mut pruned);
        let room = (pruned.capacity(), pruned.table_bytes());
        pruned.retain_keeping_room(|k, _| *k <= 100);
        assert_eq!((pruned.capacity(), pruned.table_bytes()), room);
        assert_eq!(pruned.len(), 100);
        assert!(pruned.contains_key(&100) && !pruned.contains_key(&101));

        let mut expired: KeyedTable<u64, u32> = KeyedTable::default();
        fill(&mut expired);
        expired.retain(|k, _| *k <= 100);
        assert!(expired.capacity() < room.0 && expired.table_bytes() < room.1 / 4);
        assert!(expired.contains_key(&100) && !expired.contains_key(&101));
    }
}
