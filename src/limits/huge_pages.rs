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
//! Only large blocks: a small allocation would round its footprint up to 2 MiB, and the tables that
//! miss are the large ones. The alternative, `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, marks every
//! block and made a million-workload run three times slower (compaction at every fault).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// Blocks at least this large are mapped here and marked (a window table, an index, a `DashMap`
/// shard at a million workloads; not the 4 MiB line batches).
pub const MIN_BLOCK: usize = 8 << 20;

const HUGE_PAGE: usize = 2 << 20;

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

/// Unmaps a block [`map_block`] made for `size` bytes.
unsafe fn unmap_block(p: *mut u8, size: usize) {
    #[cfg(target_os = "linux")]
    libc::munmap(p.cast(), mapped_len(size));
    #[cfg(not(target_os = "linux"))]
    let _ = (p, size);
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
        libc::munmap(p.add(new_len).cast(), old_len - new_len);
        return p;
    }
    // Without MREMAP_MAYMOVE the mapping only grows where it is, keeping its alignment and mark.
    let grown = libc::mremap(p.cast(), old_len, new_len, 0);
    if grown != libc::MAP_FAILED {
        return p;
    }
    let moved = move_block(p, old, new);
    if !moved.is_null() {
        return moved;
    }
    let q = map_block(new, marking());
    if !q.is_null() {
        std::ptr::copy_nonoverlapping(p, q, old);
        unmap_block(p, old);
    }
    q
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
// the kernel, and unmapped only by `dealloc` or `realloc` given that same block.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size(), layout.align()) {
            map_block(layout.size(), marking())
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
            unmap_block(p, layout.size())
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
                "grown zeroed"
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
