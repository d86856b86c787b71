//! [`HistoryIndex`]: each group's windows of history, counted up to the admission's threshold, in a
//! compact table beside the baselines, for the admission check that runs on every workload's first
//! record of a window.
//!
//! Why a copy: at a million workloads that check looked each first sight up in the baselines'
//! `DashMap` (a shard lock taken and released, control bytes and a 200-byte slot on two cache
//! lines, all missing the cache), 0.4 us per record of the 1.1x that a million workloads cost over
//! a thousand. The admission only asks whether a group has any history and whether it has
//! `limits.established_windows` of it, so a count that stops there fits in a 16-byte slot of an
//! [`IdMap`], one line and no lock, and changes only in a group's first few windows: in steady
//! state a close writes nothing here.
//!
//! The baselines change under a shared reference (a close folds groups from several threads), so
//! changes are noted in a queue and applied by [`HistoryIndex::sync`], which needs `&mut` and runs
//! before the next admission. A debug build checks every read against the baselines.

use crate::flow::id_map::IdMap;
use crate::flow::WorkloadId;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Windows of history per group, up to a cap (see the module doc).
#[derive(Debug, Default)]
pub struct HistoryIndex {
    /// Group → windows of history, at most `cap`; 0 for a group removed since (a hole).
    counts: IdMap<u32>,
    /// Where counts stop; 0 while not kept (the store is read directly then).
    cap: u32,
    /// Holes in `counts`: when they outnumber the groups held, the table is rebuilt.
    holes: usize,
    /// Changes not applied yet: a group's new count, 0 when it went.
    queued: Mutex<Vec<(WorkloadId, u32)>>,
    /// Something was queued, or the table must be rebuilt.
    dirty: AtomicBool,
    /// The table must be rebuilt from the store (it was replaced wholesale).
    rebuild: AtomicBool,
}

impl HistoryIndex {
    /// Starts keeping counts up to `established` windows (1 at least: a count of 0 is "no
    /// history"). The caller syncs next, which builds the table from the store.
    pub fn keep_up_to(&mut self, established: u64) {
        self.cap = established.clamp(1, u64::from(u32::MAX)) as u32;
        self.reset();
    }

    /// Whether counts are kept.
    #[inline]
    pub fn is_kept(&self) -> bool {
        self.cap > 0
    }

    /// A group's windows of history, up to the cap, as of the last [`HistoryIndex::sync`].
    #[inline]
    pub fn get(&self, group: WorkloadId) -> u64 {
        u64::from(self.counts.get(group).unwrap_or(0))
    }

    /// The cap counts stop at.
    pub fn cap(&self) -> u64 {
        u64::from(self.cap)
    }

    /// Whether changes are queued that a read would not see yet.
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Relaxed)
    }

    /// Asks for `group`'s slot, a few records before [`HistoryIndex::get`].
    #[inline]
    pub fn prefetch(&self, group: WorkloadId) {
        self.counts.prefetch(group);
    }

    /// Notes that a fold took `group` from `before` to `after` windows of history. Nothing to do
    /// once `before` reached the cap, which is every fold in steady state.
    #[inline]
    pub fn folded(&self, group: WorkloadId, before: u64, after: u64) {
        if before < u64::from(self.cap) {
            self.queue(group, after.min(u64::from(self.cap)) as u32);
        }
    }

    /// Notes that `group`'s baseline was set to one of `seen` windows (a snapshot merged in).
    pub fn set(&self, group: WorkloadId, seen: u64) {
        if self.is_kept() {
            self.queue(group, seen.min(u64::from(self.cap)) as u32);
        }
    }

    /// Notes that `group`'s baseline went.
    pub fn removed(&self, group: WorkloadId) {
        if self.is_kept() {
            self.queue(group, 0);
        }
    }

    /// Notes that the store was emptied or replaced: the next sync rebuilds the table.
    pub fn reset(&self) {
        self.rebuild.store(true, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    fn queue(&self, group: WorkloadId, count: u32) {
        self.queued
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((group, count));
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Applies the queued changes; rebuilds the table from `all` (every group and its windows of
    /// history) when it was reset or holes outnumber the groups held.
    pub fn sync<I: Iterator<Item = (WorkloadId, u64)>>(&mut self, all: impl FnOnce() -> I) {
        if !std::mem::take(self.dirty.get_mut()) || !self.is_kept() {
            return;
        }
        let queued = std::mem::take(
            self.queued
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if !std::mem::take(self.rebuild.get_mut()) {
            for (group, count) in queued {
                match (self.counts.get(group), count) {
                    (None | Some(0), 0) => {}
                    (Some(0), _) => {
                        self.holes -= 1;
                        self.counts.insert(group, count);
                    }
                    (Some(_), 0) => {
                        self.holes += 1;
                        self.counts.insert(group, 0);
                    }
                    _ => {
                        self.counts.insert(group, count);
                    }
                }
            }
            if self.holes <= self.counts.len() / 2 {
                return;
            }
        }
        let cap = u64::from(self.cap);
        let mut counts = IdMap::default();
        for (group, seen) in all() {
            if seen > 0 {
                counts.insert(group, seen.min(cap) as u32);
            }
        }
        self.counts = counts;
        self.holes = 0;
    }

    /// Bytes of the table.
    pub fn table_bytes(&self) -> usize {
        self.counts.table_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(n: u64) -> WorkloadId {
        WorkloadId(n)
    }

    #[test]
    fn counts_stop_at_the_cap_and_reads_see_changes_only_after_a_sync() {
        let mut h = HistoryIndex::default();
        h.keep_up_to(3);
        h.sync(std::iter::empty);
        for seen in 0..5 {
            h.folded(g(7), seen, seen + 1);
        }
        assert_eq!(h.get(g(7)), 0, "not synced yet");
        assert!(h.is_dirty());
        h.sync(std::iter::empty);
        assert_eq!(h.get(g(7)), 3);
        assert!(!h.is_dirty());
        h.folded(g(7), 5, 6);
        assert!(!h.is_dirty(), "a count at the cap queues nothing");
        h.removed(g(7));
        h.sync(std::iter::empty);
        assert_eq!(h.get(g(7)), 0);
    }

    #[test]
    fn holes_past_the_groups_held_rebuild_the_table_from_the_store() {
        let mut h = HistoryIndex::default();
        h.keep_up_to(2);
        h.sync(std::iter::empty);
        for n in 1..=100 {
            h.folded(g(n), 0, 1);
        }
        h.sync(std::iter::empty);
        let full = h.table_bytes();
        for n in 1..=90 {
            h.removed(g(n));
        }
        // The store now holds groups 91..=100, one of them folded once more.
        h.sync(|| (91..=100).map(|n| (g(n), if n == 95 { 2 } else { 1 })));
        assert_eq!(h.holes, 0);
        assert_eq!(h.counts.len(), 10);
        assert!(h.table_bytes() < full);
        assert_eq!((h.get(g(5)), h.get(g(91)), h.get(g(95))), (0, 1, 2));
    }

    #[test]
    fn a_reset_rebuilds_from_the_store_and_an_index_not_kept_queues_nothing() {
        let mut h = HistoryIndex::default();
        h.set(g(1), 4);
        h.removed(g(1));
        assert!(h.queued.lock().map(|q| q.is_empty()).unwrap_or(false));
        h.keep_up_to(0);
        assert_eq!(h.cap(), 1, "established = 0 still tells history from none");
        h.sync(|| [(g(1), 9), (g(2), 0)].into_iter());
        assert_eq!((h.get(g(1)), h.get(g(2))), (1, 0));
    }
}
