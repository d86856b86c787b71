//! [`IdMap`]: a hash map from [`WorkloadId`] to a small `Copy` value, for the per-record look-ups
//! that miss the cache once a cluster has hundreds of thousands of workloads (a decoder's cache of
//! registered workloads, a window's admission set, a window table's index).
//!
//! A `HashMap` keeps its control bytes and its entries in two arrays, so a look-up in a table far
//! larger than the cache misses twice. Here key and value sit together in one slot (open
//! addressing, linear probing), so a look-up that finds its key at the home slot, as most do at the
//! load kept here, misses once. [`IdMap::prefetch`] lets a loop over a batch start the next
//! records' misses while it works on this one.
//!
//! Ids are already xxh3 hashes; the home slot comes from a multiplicative (Fibonacci) mix of the id,
//! as `FxHash` would give, so the spread does not rely on the low bits alone. Like the `FxHash`
//! maps it replaced, it is not keyed: names crafted so that their ids collide would lengthen
//! probes (the admission cap and the registry's capacity bound how many such names are held). Id 0
//! is the empty marker in the slots and is kept beside them.

use super::WorkloadId;

/// Multiplier of the Fibonacci mix (2^64 / golden ratio).
pub const MIX: u64 = 0x9e37_79b9_7f4a_7c15;
/// Slots a table starts with once something is inserted.
const MIN_SLOTS: usize = 16;

/// Map from [`WorkloadId`] to `V` (see the module doc). At most 3/4 of the slots are used.
#[derive(Debug, Clone)]
pub struct IdMap<V: Copy> {
    /// (id, value); id 0 marks an empty slot. Length a power of two, or 0.
    slots: Vec<(u64, V)>,
    /// Entries in `slots`.
    len: usize,
    /// The value of id 0, which cannot live in `slots`.
    zero: Option<V>,
    /// `64 - log2(slots.len())`: the mix's top bits are the home slot. 64 while `slots` is
    /// empty, when nothing may compute a home slot.
    shift: u32,
}

impl<V: Copy> Default for IdMap<V> {
    fn default() -> Self {
        IdMap {
            slots: Vec::new(),
            len: 0,
            zero: None,
            shift: 64,
        }
    }
}

impl<V: Copy + Default> IdMap<V> {
    /// A map that holds `n` entries without growing.
    pub fn with_capacity(n: usize) -> Self {
        let mut m = IdMap::default();
        m.reserve(n);
        m
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.len + usize::from(self.zero.is_some())
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries it holds without growing.
    pub fn capacity(&self) -> usize {
        self.slots.len() / 4 * 3
    }

    /// Bytes one entry takes in a table at its fullest load (3/4); right after the table doubles
    /// it takes twice that ([`crate::limits::SLOT_SLACK`]).
    pub const fn full_entry_bytes() -> usize {
        std::mem::size_of::<(u64, V)>() * 4 / 3
    }

    /// Bytes of its slots.
    pub fn table_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<(u64, V)>()
    }

    #[inline]
    fn home(&self, id: u64) -> usize {
        (id.wrapping_mul(MIX) >> self.shift) as usize
    }

    /// Index of `id`'s slot, or of the empty slot where it would go. `slots` must be non-empty.
    #[inline]
    fn find(&self, id: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = self.home(id);
        loop {
            let k = self.slots[i].0;
            if k == id || k == 0 {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// The value of `id`.
    #[inline]
    pub fn get(&self, id: WorkloadId) -> Option<V> {
        if id.0 == 0 {
            return self.zero;
        }
        if self.slots.is_empty() {
            return None;
        }
        let (k, v) = self.slots[self.find(id.0)];
        (k == id.0).then_some(v)
    }

    /// Whether `id` is held.
    #[inline]
    pub fn contains(&self, id: WorkloadId) -> bool {
        self.get(id).is_some()
    }

    /// Sets `id`'s value; returns the previous one.
    #[inline]
    pub fn insert(&mut self, id: WorkloadId, v: V) -> Option<V> {
        let (old, slot) = self.entry(id, v);
        *slot = v;
        old
    }

    /// `id`'s value, inserting `v` first when absent; the previous value (`None` when inserted).
    #[inline]
    pub fn entry(&mut self, id: WorkloadId, v: V) -> (Option<V>, &mut V) {
        if id.0 == 0 {
            let old = self.zero;
            return (old, self.zero.get_or_insert(v));
        }
        if self.len + 1 > self.capacity() {
            self.grow_to(self.len + 1);
        }
        let i = self.find(id.0);
        let slot = &mut self.slots[i];
        if slot.0 == id.0 {
            return (Some(slot.1), &mut slot.1);
        }
        *slot = (id.0, v);
        self.len += 1;
        (None, &mut slot.1)
    }

    /// Makes room for `n` entries in all.
    pub fn reserve(&mut self, n: usize) {
        if n > self.capacity() {
            self.grow_to(n);
        }
    }

    fn grow_to(&mut self, n: usize) {
        let slots = (n.saturating_mul(4) / 3 + 1)
            .next_power_of_two()
            .max(MIN_SLOTS)
            .max(self.slots.len() * 2);
        let old = std::mem::replace(&mut self.slots, vec![(0, V::default()); slots]);
        self.shift = 64 - slots.trailing_zeros();
        for (k, v) in old {
            if k != 0 {
                let i = self.find(k);
                self.slots[i] = (k, v);
            }
        }
    }

    /// Forgets every entry, keeping the room.
    pub fn clear(&mut self) {
        if self.len > 0 {
            self.slots.fill((0, V::default()));
        }
        self.len = 0;
        self.zero = None;
    }

    /// Gives the room back.
    pub fn clear_and_free(&mut self) {
        *self = IdMap::default();
    }

    /// Asks the CPU to start loading `id`'s home slot, for a look-up a little later.
    #[inline]
    pub fn prefetch(&self, id: WorkloadId) {
        // An empty table has no home slot (and its shift is 64, too far to shift by).
        if !self.slots.is_empty() {
            prefetch(&self.slots[self.home(id.0)]);
        }
    }

    /// Every (id, value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (WorkloadId, V)> + '_ {
        self.zero.map(|v| (WorkloadId(0), v)).into_iter().chain(
            self.slots
                .iter()
                .filter(|(k, _)| *k != 0)
                .map(|&(k, v)| (WorkloadId(k), v)),
        )
    }
}

/// Asks the CPU to start loading the cache line at `p` ahead of use (a hint: no effect on
/// results, none off x86-64).
#[inline(always)]
pub fn prefetch_line<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks for every cache line of `value` (see [`prefetch_line`]). A value in a vector need not
/// start on a line, so the lines run from the one holding its first byte to the one holding its
/// last.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    prefetch_at(value as *const T);
}

/// [`prefetch`] of a `T` at `p`, which need not be valid: a prefetch never faults, so a slot
/// computed from another structure's layout (a `DashMap` shard's buckets) costs at worst a wasted
/// load when the guess is wrong.
#[inline(always)]
pub fn prefetch_at<T>(p: *const T) {
    let base: *const u8 = p.cast();
    let first = base.wrapping_sub(base as usize % 64);
    let last = base.wrapping_add(std::mem::size_of::<T>().max(1) - 1);
    let mut line = first;
    while line <= last {
        prefetch_line(line);
        line = line.wrapping_add(64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn agrees_with_a_hash_map_through_growth_and_clear() {
        let mut m: IdMap<u32> = IdMap::default();
        let mut reference = HashMap::new();
        // Ids with shared low bits and id 0 (the empty marker) among them.
        let ids: Vec<u64> = (0..5000u64)
            .map(|i| {
                if i % 7 == 0 {
                    i << 40
                } else {
                    i.wrapping_mul(0x1234_5678_9abc_def1)
                }
            })
            .collect();
        for (n, &id) in ids.iter().enumerate() {
            let old = m.insert(WorkloadId(id), n as u32);
            assert_eq!(old, reference.insert(id, n as u32), "id {id:#x}");
        }
        assert_eq!(m.len(), reference.len());
        for &id in &ids {
            assert_eq!(m.get(WorkloadId(id)), reference.get(&id).copied());
        }
        assert!(!m.contains(WorkloadId(0xdead_beef_0000_0001)));
        let mut listed: Vec<(u64, u32)> = m.iter().map(|(k, v)| (k.0, v)).collect();
        let mut expected: Vec<(u64, u32)> = reference.iter().map(|(k, v)| (*k, *v)).collect();
        listed.sort_unstable();
        expected.sort_unstable();
        assert_eq!(listed, expected);

        let room = m.capacity();
        m.clear();
        assert!(m.is_empty());
        assert_eq!(m.capacity(), room, "clear keeps the room");
        assert_eq!(m.get(WorkloadId(ids[3])), None);
        assert_eq!(m.get(WorkloadId(0)), None);
        m.clear_and_free();
        assert_eq!(m.capacity(), 0);
    }

    #[test]
    fn entry_inserts_once_and_returns_the_value_held() {
        let mut m: IdMap<u32> = IdMap::with_capacity(3);
        let cap = m.capacity();
        assert!(cap >= 3);
        let (old, v) = m.entry(WorkloadId(9), 1);
        assert_eq!(old, None);
        *v += 10;
        let (old, v) = m.entry(WorkloadId(9), 5);
        assert_eq!((old, *v), (Some(11), 11));
        assert_eq!(m.len(), 1);
        assert_eq!(m.capacity(), cap, "no growth below the reserved size");
        m.prefetch(WorkloadId(9));
        IdMap::<u32>::default().prefetch(WorkloadId(9));
    }
}
