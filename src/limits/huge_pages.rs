//! Transparent huge pages for the large tables: the global allocator is the system's, except that a
//! block of [`MIN_BLOCK`] or more is mapped by this allocator on a 2 MiB boundary and, once
//! [`configure`] turned this on (`[limits] huge_pages`), marked `MADV_HUGEPAGE`.
//!
//! Why: past a few hundred thousand workloads every per-record look-up (the decoder's cache, the
//! admission set, the window index, the baselines, the policy ledger) lands on a random 4 KiB page
//! of a table of hundreds of megabytes. The TLB covers a few megabytes, so each look-up also walks
//! the page table, and even a prefetch waits for that walk (on this VM a random read into 512 MB
//! took 436 ns on 4 KiB pages against 209 ns on 2 MiB pages, and prefetching could not hide the
//! walk). With 2 MiB pages the same TLB covers gigabytes. Linux backs a marked range with huge
//! pages as it faults in when the system's `transparent_hugepage/enabled` is `madvise` or `always`;
//! with `never` the mark does nothing.
//!
//! Why its own mappings rather than marking what `malloc` returns: `malloc` maps a large block at
//! any 4 KiB boundary and grows it with `mremap`, which moves the pages to another such boundary
//! and splits every huge page into small ones. At a million workloads half of each window table
//! had fallen back to 4 KiB pages that way. A block mapped here starts on a 2 MiB boundary, so all
//! of it can be backed, and it grows in place or by moving its pages to a new 2 MiB boundary.
//!
//! Freed large blocks are kept ([`KeptBlocks`], up to [`KEEP_BYTES`]) for the next large
//! allocation instead of being unmapped: each window close at a million workloads allocates and
//! frees a few hundred megabytes of temporaries (the sorted items, the egress edges, the pruned
//! cluster tables), and memory mapped afresh is faulted in and zeroed again at every close (on
//! this VM's balloon the host backs it anew as well). [`release_free_memory`](super::release_free_memory)
//! gives them back when the state shrinks.
//!
//! Only large blocks: a small allocation would round its footprint up to 2 MiB, and the tables that
//! miss are the large ones. The alternative, `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, marks every
//! block and made a million-workload run three times slower (compaction at every fault).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Blocks at least this large are mapped here and marked (a window table, an index, a `DashMap`
/// shard at a million workloads; not the 4 MiB line batches).
pub const MIN_BLOCK: usize = 8 << 20;

const HUGE_PAGE: usize = 2 << 20;

/// Freed large blocks kept for reuse, in bytes at most: more than the temporaries of a window
/// close at a million workloads (about 300 MB), little beside the state such a close implies.
pub const KEEP_BYTES: usize = 512 << 20;

/// Freed large blocks kept at once, at most.
const KEEP_SLOTS: usize = 16;

/// Whether new large mappings are marked; off at the start, before a config is read.
static MARK: AtomicBool = AtomicBool::new(false);

/// Turns marking on or off for large blocks mapped (or grown) from now on.
pub fn configure(on: bool) {
    MARK.store(on, Ordering::Relaxed);
}

/// Whether [`configure`] turned marking on.
#[inline]
fn marking() -> bool {
    MARK.load(Ordering::Relaxed)
}

/// Whether a block of this layout is one of this allocator's own mappings. It depends on the
/// layout alone, never on [`configure`], so a block is freed the way it was allocated.
#[inline]
fn is_large(size: usize, align: usize) -> bool {
    cfg!(target_os = "linux") && size >= MIN_BLOCK && align <= HUGE_PAGE
}

/// Bytes mapped for a large block of `size` bytes: whole 2 MiB pages, so its last page can be a
/// huge one too (untouched pages cost nothing).
#[inline]
fn mapped_len(size: usize) -> usize {
    size.next_multiple_of(HUGE_PAGE)
}

/// Marks `len` bytes at `p` for huge pages. Best effort: the kernel may refuse or not back it, and
/// nothing depends on it.
#[cfg(target_os = "linux")]
fn mark(p: *mut u8, len: usize) {
    // SAFETY: the range is a mapping this allocator made; MADV_HUGEPAGE changes how the kernel
    // backs it, never its contents or its validity.
    unsafe {
        libc::madvise(p.cast(), len, libc::MADV_HUGEPAGE);
    }
}

/// Maps `len` bytes and one huge page more with `prot` and `flags`, so that the mapping holds `len`
/// bytes from a 2 MiB boundary: returns the mapping's start and that boundary, or `None` when the
/// system refuses. [`trim_room`] gives the spare bytes back.
#[cfg(target_os = "linux")]
unsafe fn map_with_room(
    len: usize,
    prot: libc::c_int,
    flags: libc::c_int,
) -> Option<(usize, usize)> {
    let raw = libc::mmap(std::ptr::null_mut(), len + HUGE_PAGE, prot, flags, -1, 0);
    if raw == libc::MAP_FAILED {
        return None;
    }
    let raw = raw as usize;
    Some((raw, raw.next_multiple_of(HUGE_PAGE)))
}

/// Unmaps what lies before `start` and after `start + len` of a mapping [`map_with_room`] made at
/// `raw` for `len` bytes.
#[cfg(target_os = "linux")]
unsafe fn trim_room(raw: usize, start: usize, len: usize) {
    let head = start - raw;
    if head > 0 {
        libc::munmap(raw as *mut libc::c_void, head);
    }
    // The spare huge page, less what the head gave back.
    let tail = HUGE_PAGE - head;
    if tail > 0 {
        libc::munmap((start + len) as *mut libc::c_void, tail);
    }
}

/// Maps a zeroed block of `size` bytes starting on a 2 MiB boundary, marked for huge pages when
/// `marked`; null when the system refuses.
#[cfg(target_os = "linux")]
unsafe fn map_block(size: usize, marked: bool) -> *mut u8 {
    let len = mapped_len(size);
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let Some((raw, start)) = map_with_room(len, rw, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) else {
        return std::ptr::null_mut();
    };
    trim_room(raw, start, len);
    if marked {
        mark(start as *mut u8, len);
    }
    start as *mut u8
}

#[cfg(not(target_os = "linux"))]
unsafe fn map_block(_size: usize, _marked: bool) -> *mut u8 {
    unreachable!("large blocks are mapped here on Linux only")
}

/// Freed large blocks (2 MiB aligned, whole 2 MiB pages, still mapped and faulted in), handed out
/// again before anything is mapped afresh. Plain data under a lock: the allocator calls it only for
/// blocks of [`MIN_BLOCK`] or more, a few times per window close.
#[derive(Debug)]
pub struct KeptBlocks {
    /// `(start, mapped length)`, oldest first; only the first `n` are blocks.
    blocks: [(usize, usize); KEEP_SLOTS],
    n: usize,
    bytes: usize,
    limit: usize,
}

/// What [`KeptBlocks::keep`] could not keep, for the caller to unmap: `(start, length)` pairs.
type Evicted = [(usize, usize); KEEP_SLOTS + 1];

impl KeptBlocks {
    /// Keeps up to `limit` bytes.
    pub const fn new(limit: usize) -> Self {
        KeptBlocks {
            blocks: [(0, 0); KEEP_SLOTS],
            n: 0,
            bytes: 0,
            limit,
        }
    }

    /// Bytes kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A kept block for `len` bytes (a multiple of 2 MiB): the smallest that holds them, its
    /// spare end kept on its own (it is 2 MiB aligned too).
    fn take(&mut self, len: usize) -> Option<usize> {
        let (i, &(start, have)) = self.blocks[..self.n]
            .iter()
            .enumerate()
            .filter(|(_, b)| b.1 >= len)
            .min_by_key(|(_, b)| b.1)?;
        if have > len {
            self.blocks[i] = (start + len, have - len);
        } else {
            self.blocks.copy_within(i + 1..self.n, i);
            self.n -= 1;
        }
        self.bytes -= len;
        Some(start)
    }

    /// Keeps the block of `len` bytes at `start`; returns what must be unmapped instead (the block
    /// itself when it alone is over the limit, else the oldest blocks until the rest fit).
    fn keep(&mut self, start: usize, len: usize, out: &mut Evicted) -> usize {
        if len > self.limit {
            out[0] = (start, len);
            return 1;
        }
        let mut evicted = 0;
        while self.n > 0 && (self.n == KEEP_SLOTS || self.bytes + len > self.limit) {
            out[evicted] = self.blocks[0];
            evicted += 1;
            self.bytes -= self.blocks[0].1;
            self.blocks.copy_within(1..self.n, 0);
            self.n -= 1;
        }
        self.blocks[self.n] = (start, len);
        self.n += 1;
        self.bytes += len;
        evicted
    }

    /// Empties the store, returning every block for the caller to unmap.
    fn drain(&mut self, out: &mut Evicted) -> usize {
        let n = self.n;
        out[..n].copy_from_slice(&self.blocks[..n]);
        self.n = 0;
        self.bytes = 0;
        n
    }
}

/// The allocator's store of freed large blocks.
static KEPT: Mutex<KeptBlocks> = Mutex::new(KeptBlocks::new(KEEP_BYTES));

/// The store, even if a thread panicked holding it (its plain data is never left half-updated).
fn kept() -> MutexGuard<'static, KeptBlocks> {
    KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Bytes of freed large blocks the allocator keeps for reuse.
pub fn kept_bytes() -> usize {
    kept().bytes()
}

/// Unmaps the `n` first blocks of `blocks`.
unsafe fn unmap_all(blocks: &Evicted, n: usize) {
    #[cfg(target_os = "linux")]
    for &(start, len) in &blocks[..n] {
        libc::munmap(start as *mut libc::c_void, len);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (blocks, n);
}

/// Unmaps every kept block (the state shrank: give the memory back).
pub fn release_kept() {
    let mut out = [(0, 0); KEEP_SLOTS + 1];
    let n = kept().drain(&mut out);
    // SAFETY: kept blocks are mappings no allocation uses any more, now out of the store.
    unsafe { unmap_all(&out, n) }
}

/// A large block of `size` bytes: a kept one when one is large enough, else mapped afresh. Its
/// bytes are whatever they were (for `alloc`, not `alloc_zeroed`). A kept block was marked when it
/// was mapped if marking was on then; marking is turned on once, before any large block.
unsafe fn reuse_or_map_block(size: usize) -> *mut u8 {
    // Taken in a statement of its own, so the store's lock is not held while mapping.
    let taken = kept().take(mapped_len(size));
    match taken {
        Some(start) => start as *mut u8,
        None => map_block(size, marking()),
    }
}

/// Frees `len` bytes (a multiple of 2 MiB) of a large block from 2 MiB aligned `start`: kept for
/// reuse, or unmapped when the store is full.
unsafe fn keep_or_unmap(start: usize, len: usize) {
    let mut out = [(0, 0); KEEP_SLOTS + 1];
    let n = kept().keep(start, len, &mut out);
    unmap_all(&out, n);
}

/// Copies the first `old` bytes of the large block at `p` into the large block at `q`, frees the
/// block at `p` (kept or unmapped) and returns `q`: growth into another block.
#[cfg(target_os = "linux")]
unsafe fn copy_and_free(p: *mut u8, old: usize, q: *mut u8) -> *mut u8 {
    std::ptr::copy_nonoverlapping(p, q, old);
    keep_or_unmap(p as usize, mapped_len(old));
    q
}

/// Grows or shrinks a block [`map_block`] made for `old` bytes to `new` bytes (both large): in
/// place when the address space after it is free, else by moving its pages to a new aligned
/// address, else by a copy into a new aligned mapping.
#[cfg(target_os = "linux")]
unsafe fn remap_block(p: *mut u8, old: usize, new: usize) -> *mut u8 {
    let (old_len, new_len) = (mapped_len(old), mapped_len(new));
    if new_len == old_len {
        return p;
    }
    if new_len < old_len {
        keep_or_unmap(p as usize + new_len, old_len - new_len);
        return p;
    }
    // Without MREMAP_MAYMOVE the mapping only grows where it is, keeping its alignment and mark.
    let grown = libc::mremap(p.cast(), old_len, new_len, 0);
    if grown != libc::MAP_FAILED {
        return p;
    }
    // A kept block already faulted in: copying the old bytes costs less than faulting in and
    // zeroing the grown part, and the old block is kept for the next growth (a vector doubling at
    // every close then finds each of its sizes kept from the close before).
    // (The store's lock is released at the end of this statement; freeing the old block takes it.)
    let taken = kept().take(new_len);
    if let Some(start) = taken {
        return copy_and_free(p, old, start as *mut u8);
    }
    let moved = move_block(p, old, new);
    if !moved.is_null() {
        return moved;
    }
    let q = map_block(new, marking());
    if q.is_null() {
        return q;
    }
    copy_and_free(p, old, q)
}

#[cfg(not(target_os = "linux"))]
unsafe fn remap_block(_p: *mut u8, _old: usize, _new: usize) -> *mut u8 {
    unreachable!("large blocks are mapped here on Linux only")
}

/// Grows a block [`map_block`] made for `old` bytes to `new` bytes at a new 2 MiB boundary,
/// the kernel moving its pages there (huge pages whole, both ends being aligned) rather than
/// copying them; null, with the block left where it was, when the system refuses. A grown table
/// used to be copied into fresh memory whenever the space after it was taken, which at a million
/// workloads faulted in and zeroed each new window table about twice over.
#[cfg(target_os = "linux")]
unsafe fn move_block(p: *mut u8, old: usize, new: usize) -> *mut u8 {
    let (old_len, new_len) = (mapped_len(old), mapped_len(new));
    // Address space only (no access, no memory); the move replaces its aligned part.
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    let Some((raw, start)) = map_with_room(new_len, libc::PROT_NONE, flags) else {
        return std::ptr::null_mut();
    };
    let moved = libc::mremap(
        p.cast(),
        old_len,
        new_len,
        libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
        start as *mut libc::c_void,
    );
    if moved == libc::MAP_FAILED {
        libc::munmap(raw as *mut libc::c_void, new_len + HUGE_PAGE);
        return std::ptr::null_mut();
    }
    trim_room(raw, start, new_len);
    // The moved mapping keeps the old one's mark; marking turned on since then marks it now.
    if marking() {
        mark(start as *mut u8, new_len);
    }
    start as *mut u8
}

/// The system allocator, with large blocks mapped on 2 MiB boundaries and marked for huge pages
/// (see the module doc).
pub struct HugePageAlloc;

// SAFETY: a small block is the system allocator's, unchanged. A large one ([`is_large`], decided by
// its layout alone, so every call on a block takes the same branch) is a private anonymous mapping
// of at least its size, aligned to 2 MiB (enough for any alignment `is_large` admits), zeroed by
// the kernel when `alloc_zeroed` asks, and unmapped or kept (then owned by the store alone, and
// handed to one allocation at a time) only by `dealloc` or `realloc` given that same block.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size(), layout.align()) {
            reuse_or_map_block(layout.size())
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size(), layout.align()) {
            map_block(layout.size(), marking())
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if is_large(layout.size(), layout.align()) {
            keep_or_unmap(p as usize, mapped_len(layout.size()))
        } else {
            System.dealloc(p, layout)
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        match (is_large(layout.size(), align), is_large(new_size, align)) {
            (false, false) => System.realloc(p, layout, new_size),
            (true, true) => remap_block(p, layout.size(), new_size),
            // Crossing the threshold: the block moves between the system's heap and a mapping.
            _ => {
                let Ok(new_layout) = Layout::from_size_align(new_size, align) else {
                    return std::ptr::null_mut();
                };
                let q = self.alloc(new_layout);
                if !q.is_null() {
                    std::ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                    self.dealloc(p, layout);
                }
                q
            }
        }
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

    /// Unmaps a block [`map_block`] made for `size` bytes, bypassing the store.
    unsafe fn unmap_block(p: *mut u8, size: usize) {
        libc::munmap(p.cast(), mapped_len(size));
    }

    /// The tests that go through the allocator's store of kept blocks, one at a time: each
    /// expects the store to hold what it left there.
    fn serial() -> MutexGuard<'static, ()> {
        static SERIAL: Mutex<()> = Mutex::new(());
        SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    const MB2: usize = HUGE_PAGE;

    #[test]
    fn kept_blocks_hand_out_the_smallest_fit_keep_its_spare_end_and_evict_the_oldest() {
        let mut store = KeptBlocks::new(10 * MB2);
        let mut out = [(0, 0); KEEP_SLOTS + 1];
        assert_eq!(store.take(MB2), None, "empty");
        assert_eq!(store.keep(100 * MB2, 4 * MB2, &mut out), 0);
        assert_eq!(store.keep(200 * MB2, 2 * MB2, &mut out), 0);
        assert_eq!(store.keep(300 * MB2, 3 * MB2, &mut out), 0);
        assert_eq!(store.bytes(), 9 * MB2);
        // Smallest that fits, exactly: the 3-page block.
        assert_eq!(store.take(3 * MB2), Some(300 * MB2));
        // Smallest that fits, larger: the 4-page block, its last page kept on its own.
        assert_eq!(store.take(3 * MB2), Some(100 * MB2));
        assert_eq!(store.bytes(), 3 * MB2);
        assert_eq!(store.take(MB2), Some(103 * MB2), "the spare end");
        assert_eq!(store.take(4 * MB2), None, "nothing that large");
        // Over the limit: the oldest go first, and are returned for unmapping.
        assert_eq!(store.keep(400 * MB2, 5 * MB2, &mut out), 0);
        assert_eq!(store.keep(500 * MB2, 4 * MB2, &mut out), 1);
        assert_eq!(out[0], (200 * MB2, 2 * MB2));
        assert_eq!(store.bytes(), 9 * MB2);
        // A block over the limit on its own is not kept at all.
        assert_eq!(store.keep(600 * MB2, 11 * MB2, &mut out), 1);
        assert_eq!(out[0], (600 * MB2, 11 * MB2));
        // Never more blocks than slots.
        let mut small = KeptBlocks::new(usize::MAX);
        for i in 0..KEEP_SLOTS {
            assert_eq!(small.keep(i * 10 * MB2, MB2, &mut out), 0);
        }
        assert_eq!(small.keep(1000 * MB2, MB2, &mut out), 1);
        assert_eq!(out[0], (0, MB2), "the oldest");
        assert_eq!(small.drain(&mut out), KEEP_SLOTS);
        assert_eq!((small.bytes(), small.take(MB2)), (0, None));
    }

    #[test]
    fn a_freed_large_block_is_handed_out_again_with_its_pages_and_given_back_on_release() {
        let _serial = serial();
        release_kept();
        let a = HugePageAlloc;
        let layout = Layout::from_size_align(MIN_BLOCK * 2, 8).expect("layout");
        let larger = Layout::from_size_align(MIN_BLOCK * 4, 8).expect("layout");
        // SAFETY: each pointer is passed back with the layout it was allocated with.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            fill(p, layout.size());
            a.dealloc(p, layout);
            assert_eq!(
                kept_bytes(),
                mapped_len(layout.size()),
                "kept, not unmapped"
            );
            // The same pages, faulted in and holding what they held.
            let q = a.alloc(layout);
            assert_eq!(q, p);
            assert!(holds(q, layout.size()));
            assert_eq!(kept_bytes(), 0);
            // A vector growing past its block copies into a kept block rather than faulting in
            // fresh pages; its old block is kept in turn.
            let r = a.alloc(larger);
            a.dealloc(r, larger);
            let grown = a.realloc(q, layout, larger.size());
            assert!(!grown.is_null() && grown as usize % HUGE_PAGE == 0);
            assert!(holds(grown, layout.size()));
            if grown == r {
                assert_eq!(kept_bytes(), mapped_len(layout.size()), "the old block");
            }
            a.dealloc(grown, larger);
            assert!(kept_bytes() > 0);
            release_kept();
            assert_eq!(kept_bytes(), 0, "given back");
        }
    }

    #[test]
    fn a_marked_block_is_backed_for_huge_pages_and_an_unmarked_one_is_not() {
        // SAFETY: blocks mapped here and unmapped with the sizes they were mapped for.
        unsafe {
            let marked = map_block(MIN_BLOCK * 2, true);
            let plain = map_block(MIN_BLOCK * 2, false);
            assert!(!marked.is_null() && !plain.is_null());
            assert_eq!(marked as usize % HUGE_PAGE, 0, "starts on a huge page");
            let mid = |p: *mut u8| p as usize + MIN_BLOCK;
            assert!(vm_flags(mid(marked)).contains(" hg"), "marked");
            assert!(!vm_flags(mid(plain)).contains(" hg"), "not marked");
            unmap_block(marked, MIN_BLOCK * 2);
            unmap_block(plain, MIN_BLOCK * 2);
        }
    }

    /// Writes a pattern over `n` bytes at `p`.
    unsafe fn fill(p: *mut u8, n: usize) {
        for i in (0..n).step_by(4093) {
            *p.add(i) = (i % 251) as u8;
        }
    }

    /// Whether the pattern [`fill`] wrote over `n` bytes is still at `p`.
    unsafe fn holds(p: *const u8, n: usize) -> bool {
        (0..n).step_by(4093).all(|i| *p.add(i) == (i % 251) as u8)
    }

    #[test]
    fn a_block_grown_by_moving_its_pages_keeps_its_bytes_its_alignment_and_its_mark() {
        let _serial = serial();
        release_kept();
        // SAFETY: blocks mapped here and unmapped with the sizes they were last given.
        unsafe {
            let old = MIN_BLOCK + 4096;
            let p = map_block(old, true);
            assert!(!p.is_null());
            fill(p, old);
            // The address space right after the block taken, so it cannot grow in place.
            let next = p.add(mapped_len(old));
            let blocker = libc::mmap(
                next.cast(),
                HUGE_PAGE,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            );
            let blocked = blocker == next.cast();
            let new = MIN_BLOCK * 3;
            let q = remap_block(p, old, new);
            assert!(!q.is_null());
            if blocked {
                assert_ne!(q, p, "could not grow in place");
            }
            assert_eq!(q as usize % HUGE_PAGE, 0, "starts on a huge page");
            assert!(holds(q, old), "the old bytes moved with it");
            assert!(
                (old..new).step_by(4096).all(|i| *q.add(i) == 0),
                "grown zeroed: moved, with nothing kept to copy into"
            );
            assert!(
                vm_flags(q as usize + MIN_BLOCK * 2).contains(" hg"),
                "marked"
            );
            fill(q, new);
            assert!(holds(q, new));
            if blocker != libc::MAP_FAILED {
                libc::munmap(blocker, HUGE_PAGE);
            }
            // Moved directly too, whatever lies after it.
            let r = move_block(q, new, new + MIN_BLOCK);
            assert!(!r.is_null() && r as usize % HUGE_PAGE == 0 && r != q);
            assert!(holds(r, new));
            unmap_block(r, new + MIN_BLOCK);
        }
    }

    #[test]
    fn a_block_keeps_its_bytes_and_its_alignment_through_growth_shrinking_and_back_to_small() {
        let _serial = serial();
        let a = HugePageAlloc;
        let small = Layout::from_size_align(MIN_BLOCK / 2, 8).expect("layout");
        // SAFETY: each pointer is passed back with the layout (size) it was last given.
        unsafe {
            let p = a.alloc(small);
            assert!(!p.is_null());
            fill(p, small.size());
            // Small to large: copied into an aligned mapping of its own.
            let big = MIN_BLOCK + 12345;
            let mut p = a.realloc(p, small, big);
            assert!(!p.is_null() && p as usize % HUGE_PAGE == 0);
            assert!(holds(p, small.size()));
            fill(p, big);
            // Large to larger, more than once: in place, moved or copied, always aligned.
            let mut size = big;
            for grown in [MIN_BLOCK * 3, MIN_BLOCK * 7 + 1] {
                let layout = Layout::from_size_align(size, 8).expect("layout");
                p = a.realloc(p, layout, grown);
                assert!(!p.is_null() && p as usize % HUGE_PAGE == 0);
                assert!(holds(p, size), "grown to {grown}");
                fill(p, grown);
                size = grown;
            }
            // Shrunk, still large: in place.
            let layout = Layout::from_size_align(size, 8).expect("layout");
            let q = a.realloc(p, layout, MIN_BLOCK);
            assert_eq!(q, p, "shrinks in place");
            assert!(holds(q, MIN_BLOCK));
            // Back to small: the system's block again.
            let layout = Layout::from_size_align(MIN_BLOCK, 8).expect("layout");
            let r = a.realloc(q, layout, 1000);
            assert!(!r.is_null());
            assert!(holds(r, 1000));
            a.dealloc(r, Layout::from_size_align(1000, 8).expect("layout"));
            // Zeroed large blocks come from the kernel zeroed.
            let z = Layout::from_size_align(MIN_BLOCK, 64).expect("layout");
            let p = a.alloc_zeroed(z);
            assert!(!p.is_null() && (0..MIN_BLOCK).step_by(4096).all(|i| *p.add(i) == 0));
            a.dealloc(p, z);
        }
    }
}
