//! A cache of large freed blocks in front of the system allocator, for the CLI's `#[global_allocator]` (and any
//! pipeline that wants it).
//!
//! Why: a run allocates and frees frame-sized buffers (grouped points, indices, colours, decode buffers) for every
//! frame. The CLI fixes glibc's mmap threshold at 128 KiB so that those buffers are mmapped and a long run's memory
//! stays flat (BENCHMARKS.md, "Long runs"), but then every such buffer is fresh pages from the kernel: a page fault
//! and a cleared page every 4 KiB, and an unmap when freed. In a profile of the CUDA backend's host side (on the
//! emulator of `kernels/emu`), page faults and unmaps were about 40% of the host's CPU samples.
//!
//! This cache keeps up to a fixed number of bytes of freed large blocks and hands them out again, so a frame reuses
//! the pages of the frames before it, while the memory held stays bounded by the cap (the oldest cached blocks go
//! back to the system first) and by use (a block not taken again within 1,024 frees of large blocks goes back, so
//! the cache holds what the run keeps reusing: about as much after a hundred frames as after ten thousand). A
//! growing block takes a cached one of its new class if there is one, else the system resizes it (glibc: mremap).
//! Blocks of at least [`BigBlockCache::MIN_BYTES`] are rounded up to a size class (eight classes per doubling: at
//! most 12.5% over) and served from the smallest cached block of the same alignment that holds the class and is
//! less than twice as large; smaller requests go straight to the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Cached blocks at most.
const SLOTS: usize = 256;
/// A cached block not taken again within this many frees of large blocks goes back to the system.
const STALE: u64 = 1024;
/// Blocks handed out larger than their request's class (their real size is kept here until they are freed) at most.
const LENT: usize = 256;

#[derive(Clone, Copy)]
struct Slot {
    ptr: usize,
    size: usize,
    align: usize,
    /// When it was cached (larger is newer); 0: empty.
    stamp: u64,
}

const EMPTY: Slot = Slot { ptr: 0, size: 0, align: 0, stamp: 0 };

struct Cache {
    slots: [Slot; SLOTS],
    bytes: usize,
    clock: u64,
    /// (address, real size) of each block in use that is larger than its request's class; address 0: free entry.
    lent: [(usize, usize); LENT],
}

/// A [`GlobalAlloc`] that caches freed blocks of at least [`BigBlockCache::MIN_BYTES`], up to a byte cap, and serves
/// requests of the same size class from them (see the module's documentation).
pub struct BigBlockCache {
    cache: Mutex<Cache>,
    cap: AtomicUsize,
    hits: AtomicUsize,
    misses: AtomicUsize,
}

/// How the cache has served large requests so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BigBlockStats {
    /// Large requests served from the cache.
    pub hits: usize,
    /// Large requests passed to the system allocator.
    pub misses: usize,
    /// Bytes held in cached blocks now.
    pub cached_bytes: usize,
}

impl BigBlockCache {
    /// Requests smaller than this go straight to the system allocator (the CLI's mmap threshold).
    pub const MIN_BYTES: usize = 128 * 1024;

    /// A cache holding at most `cap_bytes` of freed blocks (0: no caching).
    pub const fn new(cap_bytes: usize) -> Self {
        Self {
            cache: Mutex::new(Cache { slots: [EMPTY; SLOTS], bytes: 0, clock: 0, lent: [(0, 0); LENT] }),
            cap: AtomicUsize::new(cap_bytes),
            hits: AtomicUsize::new(0),
            misses: AtomicUsize::new(0),
        }
    }

    /// Changes the cap; blocks over it are released on the next free.
    pub fn set_cap(&self, cap_bytes: usize) {
        self.cap.store(cap_bytes, Ordering::Relaxed);
    }

    pub fn stats(&self) -> BigBlockStats {
        let cached_bytes = self.cache.lock().map_or(0, |c| c.bytes);
        BigBlockStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            cached_bytes,
        }
    }

    /// Releases every cached block to the system allocator (for example before `malloc_trim`).
    pub fn release(&self) {
        let Ok(mut c) = self.cache.lock() else { return };
        for s in c.slots.iter_mut() {
            if s.stamp != 0 {
                // SAFETY: the slot holds a block this cache got from System with this size and alignment, which
                // nobody else references (it was freed to the cache).
                unsafe { System.dealloc(s.ptr as *mut u8, Layout::from_size_align_unchecked(s.size, s.align)) };
                *s = EMPTY;
            }
        }
        c.bytes = 0;
    }

    /// The size a large request of `size` bytes is served with: rounded up to a multiple of an eighth of the power
    /// of two below it.
    pub const fn class_size(size: usize) -> usize {
        let top = usize::BITS - 1 - size.leading_zeros();
        let step = 1usize << (top.saturating_sub(3));
        size.div_ceil(step) * step
    }

    fn is_large(layout: &Layout) -> bool {
        layout.size() >= Self::MIN_BYTES && layout.align() <= 4096
    }

    /// A cached block for a large request of class `size`, if any: the smallest of that alignment holding `size`
    /// bytes and less than twice as large (a larger one is recorded as lent, with its real size).
    fn take(&self, size: usize, align: usize) -> Option<*mut u8> {
        let mut c = self.cache.lock().ok()?;
        let lent_at = c.lent.iter().position(|&(p, _)| p == 0);
        let i = (0..SLOTS)
            .filter(|&i| {
                let s = &c.slots[i];
                s.stamp != 0
                    && s.align == align
                    && s.size >= size
                    && s.size < size.saturating_mul(2)
                    && (s.size == size || lent_at.is_some())
            })
            .min_by_key(|&i| (c.slots[i].size, std::cmp::Reverse(c.slots[i].stamp)))?;
        let s = c.slots[i];
        c.slots[i] = EMPTY;
        c.bytes -= s.size;
        if s.size != size {
            if let Some(j) = lent_at {
                c.lent[j] = (s.ptr, s.size);
            }
        }
        Some(s.ptr as *mut u8)
    }

    /// `alloc` and `alloc_zeroed`: a cached block when one holds the request's class, else a fresh one from System.
    ///
    /// # Safety
    /// As [`GlobalAlloc::alloc`]: `layout` has a non-zero size.
    unsafe fn allocate(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        if !Self::is_large(&layout) {
            // SAFETY: forwarded with the caller's layout (non-zero size).
            return unsafe {
                if zeroed {
                    System.alloc_zeroed(layout)
                } else {
                    System.alloc(layout)
                }
            };
        }
        let size = Self::class_size(layout.size());
        if let Some(p) = self.take(size, layout.align()) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            if zeroed {
                // SAFETY: the cached block holds `size` >= layout.size() bytes and is this caller's alone.
                unsafe { std::ptr::write_bytes(p, 0, layout.size()) };
            }
            return p;
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        // SAFETY: size >= layout.size() > 0 and the alignment is the caller's (a power of two), so the layout is
        // valid; System's calloc zeroes the whole block.
        unsafe {
            let fresh = Layout::from_size_align_unchecked(size, layout.align());
            if zeroed {
                System.alloc_zeroed(fresh)
            } else {
                System.alloc(fresh)
            }
        }
    }

    /// The real size of a lent block, if `ptr` is one.
    fn lent_size(&self, ptr: *mut u8) -> Option<usize> {
        let c = self.cache.lock().ok()?;
        c.lent.iter().find(|&&(p, _)| p == ptr as usize).map(|&(_, size)| size)
    }

    /// The real size of a large block being freed whose request's class is `size`; a lent block's record goes.
    fn take_real_size(&self, ptr: *mut u8, size: usize) -> usize {
        let Ok(mut c) = self.cache.lock() else { return size };
        match c.lent.iter().position(|&(p, _)| p == ptr as usize) {
            Some(j) => {
                let real = c.lent[j].1;
                c.lent[j] = (0, 0);
                real
            }
            None => size,
        }
    }

    /// Keeps a freed block (rounded `size`), evicting the oldest ones over the cap; `false` when it does not fit at
    /// all (the caller frees it).
    fn keep(&self, ptr: *mut u8, size: usize, align: usize) -> bool {
        let cap = self.cap.load(Ordering::Relaxed);
        if size > cap {
            return false;
        }
        let Ok(mut c) = self.cache.lock() else { return false };
        // Blocks nobody took in the last STALE frees go back (the cache holds what the run reuses, not what it once
        // freed: so it is as full after a hundred frames as after ten thousand), then the oldest until this one fits,
        // in bytes and in slots.
        let mut evicted: [Slot; SLOTS] = [EMPTY; SLOTS];
        let mut n_evicted = 0;
        let clock = c.clock;
        for i in 0..SLOTS {
            let s = c.slots[i];
            if s.stamp != 0 && clock - s.stamp >= STALE {
                evicted[n_evicted] = s;
                n_evicted += 1;
                c.bytes -= s.size;
                c.slots[i] = EMPTY;
            }
        }
        while c.bytes + size > cap || c.slots.iter().all(|s| s.stamp != 0) {
            let Some(i) = (0..SLOTS).filter(|&i| c.slots[i].stamp != 0).min_by_key(|&i| c.slots[i].stamp) else {
                break;
            };
            evicted[n_evicted] = c.slots[i];
            n_evicted += 1;
            c.bytes -= c.slots[i].size;
            c.slots[i] = EMPTY;
        }
        let kept = match c.slots.iter().position(|s| s.stamp == 0) {
            Some(i) if c.bytes + size <= cap => {
                c.clock += 1;
                let stamp = c.clock;
                c.slots[i] = Slot { ptr: ptr as usize, size, align, stamp };
                c.bytes += size;
                true
            }
            _ => false,
        };
        drop(c);
        for s in &evicted[..n_evicted] {
            // SAFETY: as in `release`: blocks this cache got from System with this size and alignment.
            unsafe { System.dealloc(s.ptr as *mut u8, Layout::from_size_align_unchecked(s.size, s.align)) };
        }
        kept
    }
}

// SAFETY: large blocks are allocated from System with the class size (never less than the request) and the request's
// alignment, and freed to System with that same size and alignment, or cached and handed out whole to one later
// request of the same class size and alignment; the cache's slots are only touched under its mutex. Small requests
// go to System unchanged. `Mutex::lock` does not allocate.
unsafe impl GlobalAlloc for BigBlockCache {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { self.allocate(layout, false) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe { self.allocate(layout, true) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !Self::is_large(&layout) {
            // SAFETY: a small block came from System with this layout.
            return unsafe { System.dealloc(ptr, layout) };
        }
        let size = self.take_real_size(ptr, Self::class_size(layout.size()));
        if !self.keep(ptr, size, layout.align()) {
            // SAFETY: a large block came from System (or the cache, which got it from System) with its real size
            // (the request's class size, or the size recorded when it was lent) and this alignment.
            unsafe { System.dealloc(ptr, Layout::from_size_align_unchecked(size, layout.align())) };
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let (old_large, new_large) = (Self::is_large(&layout), Self::is_large(&new_layout));
        // The block already has room (same size class): nothing moves.
        if old_large && new_large && Self::class_size(layout.size()) == Self::class_size(new_size) {
            return ptr;
        }
        // A cached block of the new class, if there is one: its pages are already mapped and written.
        if new_large {
            if let Some(p) = self.take(Self::class_size(new_size), layout.align()) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                // SAFETY: both blocks hold at least the smaller size; the cached one is this caller's alone; the
                // old block is then freed through this allocator with the caller's layout.
                unsafe {
                    std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                return p;
            }
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        // Otherwise System resizes the block it gave (glibc moves an mmapped block's pages with mremap: no copy, no
        // fresh pages for the part already written), from its real size to the new request's.
        let old_real = match old_large {
            true => self.lent_size(ptr).unwrap_or(Self::class_size(layout.size())),
            false => layout.size(),
        };
        let new_real = if new_large { Self::class_size(new_size) } else { new_size };
        // SAFETY: `ptr` came from System with `old_real` bytes and this alignment (a large block's class size, or the
        // size recorded when it was lent); `new_real` >= new_size > 0 and the alignment is valid.
        let moved =
            unsafe { System.realloc(ptr, Layout::from_size_align_unchecked(old_real, layout.align()), new_real) };
        if !moved.is_null() && old_large {
            // The block moved: it is no longer lent (its record goes).
            self.take_real_size(ptr, old_real);
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_sizes_cover_the_request_within_an_eighth() {
        for size in [BigBlockCache::MIN_BYTES, 131_073, 200_000, 1 << 20, (1 << 20) + 1, 3_000_000, 1 << 30] {
            let c = BigBlockCache::class_size(size);
            assert!(c >= size && c - size <= size / 8, "{size} -> {c}");
            assert_eq!(BigBlockCache::class_size(c), c, "{size} -> {c} is not a fixed point");
        }
    }

    #[test]
    fn freed_blocks_are_reused_up_to_the_cap_and_released() {
        let cache = BigBlockCache::new(1 << 20);
        let layout = Layout::from_size_align(300_000, 8).unwrap();
        // SAFETY: each block is allocated, written within its layout and freed once with that layout.
        unsafe {
            let a = cache.alloc(layout);
            assert!(!a.is_null());
            a.write_bytes(7, layout.size());
            cache.dealloc(a, layout);
            assert_eq!(cache.stats().cached_bytes, BigBlockCache::class_size(300_000));
            // Same class: the same block, zeroed when asked.
            assert_eq!(BigBlockCache::class_size(310_000), BigBlockCache::class_size(300_000));
            let b = cache.alloc_zeroed(Layout::from_size_align(310_000, 8).unwrap());
            assert_eq!(b, a);
            assert!((0..310_000).all(|i| *b.add(i) == 0));
            assert_eq!(cache.stats().hits, 1);
            // Growing within the class keeps the block; beyond it moves and keeps the contents.
            b.write_bytes(3, 310_000);
            let c = cache.realloc(b, Layout::from_size_align(310_000, 8).unwrap(), 320_000);
            assert_eq!(c, b);
            let d = cache.realloc(c, Layout::from_size_align(320_000, 8).unwrap(), 700_000);
            assert!((0..310_000).all(|i| *d.add(i) == 3));
            cache.dealloc(d, Layout::from_size_align(700_000, 8).unwrap());
            // Over the cap: three blocks of ~600 KiB cannot all stay; the oldest go first.
            let l = Layout::from_size_align(600_000, 8).unwrap();
            let blocks: Vec<*mut u8> = (0..3).map(|_| cache.alloc(l)).collect();
            for &p in &blocks {
                cache.dealloc(p, l);
            }
            assert!(cache.stats().cached_bytes <= 1 << 20);
            cache.release();
            assert_eq!(cache.stats().cached_bytes, 0);
        }
    }

    #[test]
    fn lent_blocks_keep_their_real_size_through_realloc_and_free() {
        let cache = BigBlockCache::new(8 << 20);
        let big = Layout::from_size_align(1_000_000, 8).unwrap();
        // SAFETY: every block is written within its current size and freed once, with its current layout.
        unsafe {
            let a = cache.alloc(big);
            a.write_bytes(1, big.size());
            cache.dealloc(a, big);
            // A smaller request (more than half) gets the cached 1 MB block: lent, its real size recorded.
            let small = Layout::from_size_align(600_000, 8).unwrap();
            let b = cache.alloc(small);
            assert_eq!(b, a);
            assert_eq!(cache.lent_size(b), Some(BigBlockCache::class_size(1_000_000)));
            b.write_bytes(2, small.size());
            // Resized to another class with nothing cached: System resizes it from its real size, and it is no
            // longer lent.
            let c = cache.realloc(b, small, 2_000_000);
            assert!(!c.is_null());
            assert_eq!(cache.lent_size(b), None);
            assert!((0..600_000).all(|i| *c.add(i) == 2));
            c.write_bytes(4, 2_000_000);
            // Large to small and small to large keep the contents too.
            let d = cache.realloc(c, Layout::from_size_align(2_000_000, 8).unwrap(), 1000);
            assert!((0..1000).all(|i| *d.add(i) == 4));
            let e = cache.realloc(d, Layout::from_size_align(1000, 8).unwrap(), 500_000);
            assert!((0..1000).all(|i| *e.add(i) == 4));
            cache.dealloc(e, Layout::from_size_align(500_000, 8).unwrap());
            // A cached block of the new class is used when growing: the 500,000-byte block just freed.
            let f = cache.alloc(Layout::from_size_align(200_000, 8).unwrap());
            f.write_bytes(5, 200_000);
            let g = cache.realloc(f, Layout::from_size_align(200_000, 8).unwrap(), 500_000);
            assert_eq!(g, e);
            assert!((0..200_000).all(|i| *g.add(i) == 5));
            cache.dealloc(g, Layout::from_size_align(500_000, 8).unwrap());
        }
        cache.release();
    }

    #[test]
    fn small_and_overaligned_requests_pass_through() {
        let cache = BigBlockCache::new(1 << 20);
        // SAFETY: allocated and freed with the same layouts.
        unsafe {
            let small = Layout::from_size_align(64, 8).unwrap();
            let p = cache.alloc(small);
            cache.dealloc(p, small);
            let aligned = Layout::from_size_align(1 << 18, 1 << 16).unwrap();
            let q = cache.alloc(aligned);
            assert_eq!(q as usize % (1 << 16), 0);
            cache.dealloc(q, aligned);
        }
        assert_eq!(cache.stats(), BigBlockStats::default());
    }
}
