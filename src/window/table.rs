//! `WindowTable`: one open window's aggregates on one shard, keyed by workload.
//!
//! The aggregates live side by side in a vector in first-seen order; a small hash index (an
//! [`crate::flow::IdMap`], key and slot together) maps a workload to its slot: a
//! [`KeyedTable`], as the policy ledger and the cluster tables use. A plain
//! `HashMap<WorkloadId, WindowAggregate>` kept the 440-byte aggregates in its buckets, and buckets
//! come in powers of two at a 7/8 load: a window of 2M workloads took 4M buckets (1.8 GB) and
//! probing touched aggregates on the way. Here only the 16-byte index entries are rounded up and
//! probed, and the aggregates take what they use.
//!
//! A closed window's table is cleared and handed to the shard's next window
//! ([`WindowTable::recycle`]): reusing its pages instead of mapping fresh ones took the page-fault
//! time out of aggregating at a million workloads.

use super::WindowAggregate;
use crate::flow::keyed_table::KeyedTable;
use crate::flow::WorkloadId;

/// One window's aggregates on one shard: a [`KeyedTable`] by workload id (its own hash, so no
/// workload is ever refused), reused from window to window.
#[derive(Default)]
pub struct WindowTable {
    table: KeyedTable<WorkloadId, WindowAggregate>,
}

impl WindowTable {
    /// An empty table with room for `n` aggregates.
    pub fn with_capacity(n: usize) -> Self {
        WindowTable {
            table: KeyedTable::with_capacity(n),
        }
    }

    /// Worst-case bytes per aggregate beyond its heap (see [`KeyedTable::worst_entry_bytes`]).
    pub const fn worst_entry_bytes() -> usize {
        KeyedTable::<WorkloadId, WindowAggregate>::worst_entry_bytes()
    }

    /// Aggregates held.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the table holds no aggregate.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The workload's aggregate, created empty if it has none yet.
    #[inline]
    pub fn entry(&mut self, id: WorkloadId) -> &mut WindowAggregate {
        self.table.entry(id)
    }

    /// Starts loading `id`'s index entry, for an [`entry`](Self::entry) some records later.
    #[inline]
    pub fn prefetch_index(&self, id: WorkloadId) {
        self.table.prefetch_index(&id);
    }

    /// Starts loading `id`'s aggregate when it has one. Its index entry should be in the cache
    /// already ([`prefetch_index`](Self::prefetch_index) a few records earlier), so the two misses
    /// of an `entry` at a million workloads overlap with work on the records before it.
    #[inline]
    pub fn prefetch_aggregate(&self, id: WorkloadId) {
        self.table.prefetch_entry(&id);
    }

    /// Puts an aggregate in, replacing the workload's current one.
    pub fn insert(&mut self, id: WorkloadId, agg: WindowAggregate) {
        *self.entry(id) = agg;
    }

    /// The workload's aggregate, if it has one.
    pub fn get(&self, id: WorkloadId) -> Option<&WindowAggregate> {
        self.table.get(&id)
    }

    /// Workloads and aggregates, in first-seen order.
    pub fn iter(&self) -> impl Iterator<Item = (WorkloadId, &WindowAggregate)> + '_ {
        self.table.iter().map(|(id, agg)| (*id, agg))
    }

    /// Workloads and aggregates, in first-seen order, mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (WorkloadId, &mut WindowAggregate)> + '_ {
        self.table.iter_mut().map(|(id, agg)| (*id, agg))
    }

    /// The workloads and their aggregates, in first-seen order.
    pub fn into_entries(self) -> Vec<(WorkloadId, WindowAggregate)> {
        self.table.into_entries()
    }

    /// Workloads held.
    pub fn keys(&self) -> impl Iterator<Item = WorkloadId> + '_ {
        self.table.iter().map(|(id, _)| *id)
    }

    /// Bytes held by the index and the slots (capacity, not just what is used), without the
    /// aggregates' heap.
    pub fn table_bytes(&self) -> usize {
        self.table.table_bytes()
    }

    /// Empties the table for the next window, keeping its memory; gives it up instead when its
    /// room is far larger than what it held (sized for an earlier burst), so one burst does not
    /// pin its memory.
    pub fn recycle(mut self) -> Option<Self> {
        if self.table.capacity() > self.table.len().saturating_mul(4).max(4096) {
            return None;
        }
        self.table.clear();
        Some(self)
    }

    /// Grows room to at least `n` aggregates (see [`KeyedTable::reserve_total`]).
    pub fn reserve_total(&mut self, n: usize) {
        self.table.reserve_total(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> WorkloadId {
        WorkloadId(n)
    }

    #[test]
    fn entries_are_found_again_in_first_seen_order() {
        let mut t = WindowTable::with_capacity(2);
        for n in [5, 3, 5, 9, 3] {
            t.entry(id(n)).records_out += 1;
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.keys().collect::<Vec<_>>(), vec![id(5), id(3), id(9)]);
        assert_eq!(t.get(id(5)).map(|a| a.records_out), Some(2));
        assert_eq!(t.get(id(9)).map(|a| a.records_out), Some(1));
        assert!(t.get(id(4)).is_none());
        let agg = WindowAggregate {
            records_out: 7,
            ..WindowAggregate::default()
        };
        t.insert(id(9), agg);
        assert_eq!(t.get(id(9)).map(|a| a.records_out), Some(7));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn a_recycled_table_is_empty_and_keeps_its_room_unless_oversized() {
        let mut t = WindowTable::with_capacity(10_000);
        for n in 0..10_000 {
            t.entry(id(n)).records_out = 1;
        }
        let room = t.table_bytes();
        let t = t.recycle().expect("a table as full as its room is kept");
        assert!(t.is_empty());
        assert!(t.get(id(1)).is_none());
        assert_eq!(t.table_bytes(), room);
        let mut big = WindowTable::with_capacity(100_000);
        big.entry(id(1));
        assert!(
            big.recycle().is_none(),
            "a table sized for a burst is given up"
        );
    }
}
