//! Transparent huge pages for the large tables: the global allocator is the system's, except that a
//! block of [`MIN_BLOCK`] or more, once [`configure`] turned this on (`[limits] huge_pages`), has
//! its 2 MiB-aligned interior marked `MADV_HUGEPAGE`.
//!
//! Why: past a few hundred thousand workloads every per-record look-up (the decoder's cache, the
//! admission set, the window index, the baselines, the policy ledger) lands on a random 4 KiB page
//! of a table of hundreds of megabytes. The TLB covers a few megabytes, so each look-up also walks
//! the page table, and even a prefetch waits for that walk. With 2 MiB pages the same TLB covers
//! gigabytes. Linux backs a marked range with huge pages as it faults in when the system's
//! `transparent_hugepage/enabled` is `madvise` or `always`; with `never` the mark does nothing.
//!
//! Only large blocks are marked: a small allocation would round its footprint up to 2 MiB, and the
//! tables that miss are the large ones. The alternative, `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`,
//! marks every block and made a million-workload run three times slower (compaction at every fault).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Blocks at least this large are marked (a window table, an index, a `DashMap` shard at a
/// million workloads; not the 4 MiB line batches).
pub const MIN_BLOCK: usize = 8 << 20;

const HUGE_PAGE: usize = 2 << 20;

/// The smallest block marked; `usize::MAX` while off (the start, before a config is read).
static THRESHOLD: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Turns marking on or off for blocks allocated (or grown) from now on.
pub fn configure(on: bool) {
    let t = if on { MIN_BLOCK } else { usize::MAX };
    THRESHOLD.store(t, Ordering::Relaxed);
}

/// Marks `p`'s block of `size` bytes when it reaches the threshold [`configure`] set.
#[inline]
fn advise(p: *mut u8, size: usize) {
    if !p.is_null() && size >= THRESHOLD.load(Ordering::Relaxed) {
        mark(p, size);
    }
}

/// Marks the 2 MiB-aligned interior of the `size` bytes at `p` for huge pages. Best effort: the
/// kernel may refuse or not back it, and nothing depends on it.
fn mark(p: *mut u8, size: usize) {
    let start = (p as usize).next_multiple_of(HUGE_PAGE);
    let end = (p as usize + size) & !(HUGE_PAGE - 1);
    if end <= start {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: the range lies inside a block this allocator handed out; MADV_HUGEPAGE changes how
    // the kernel backs it, never its contents or its validity.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
}

/// The system allocator with large blocks marked for huge pages (see the module doc).
pub struct HugePageAlloc;

// SAFETY: every call is forwarded to `System` unchanged; `advise` only adds a hint on the memory
// `System` returned.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        System.dealloc(p, layout)
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = System.realloc(p, layout, new_size);
        advise(q, new_size);
        q
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The `VmFlags` line of the mapping holding `addr`, from `/proc/self/smaps`.
    fn vm_flags(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut inside = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = first.split_once('-') {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    inside = (lo..hi).contains(&addr);
                    continue;
                }
            }
            if inside && line.starts_with("VmFlags:") {
                return line.to_string();
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    #[test]
    fn a_marked_block_is_backed_for_huge_pages_and_its_neighbour_is_not() {
        // Above glibc's largest dynamic mmap threshold (32 MiB): each a mapping of its own.
        let layout = Layout::from_size_align(MIN_BLOCK * 8, 64).expect("layout");
        // SAFETY: plain allocations from the system allocator, freed below with their layout.
        unsafe {
            let marked = System.alloc(layout);
            let plain = System.alloc(layout);
            assert!(!marked.is_null() && !plain.is_null());
            mark(marked, layout.size());
            let mid = |p: *mut u8| p as usize + layout.size() / 2;
            assert!(vm_flags(mid(marked)).contains(" hg"), "marked");
            assert!(!vm_flags(mid(plain)).contains(" hg"), "not marked");
            // Too small to hold an aligned 2 MiB page: nothing to mark, and no call made.
            mark(plain, HUGE_PAGE / 2);
            assert!(!vm_flags(mid(plain)).contains(" hg"));
            System.dealloc(marked, layout);
            System.dealloc(plain, layout);
        }
    }
}
