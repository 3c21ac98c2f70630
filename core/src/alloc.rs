//! A bump allocator for the plugin executables.
//!
//! A plugin runs once per container start or stop, for a couple of
//! milliseconds, and allocates a few hundred kilobytes at most. musl's
//! allocator (the plugins are static musl binaries, see `.cargo/config.toml`)
//! maps and unmaps memory for its size classes as they fill and empty: ~40
//! `mmap`/`munmap` pairs per bridge ADD, each a system call and page faults,
//! ~0.3 ms of a ~2 ms ADD on a VM.
//!
//! [`Arena`] hands out memory from a static buffer instead: an allocation
//! moves a pointer, a free is a no-op unless it is the latest allocation
//! (then the space is taken back, so a growing `Vec` or `String` extends in
//! place). Once the buffer is used up, allocations go to the system
//! allocator. Memory freed in the buffer is not reused: fine for a process
//! that lives for milliseconds, wrong for a long-lived one (the `nuage`
//! runner does not use it).
//!
//! Usage, in a plugin's `main.rs`:
//! `#[global_allocator] static ALLOC: nuage_core::alloc::Arena = nuage_core::alloc::Arena::new();`

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The buffer's size: far above what any verb of a plugin needs (zeroed
/// `.bss`, so pages that are never touched cost nothing).
const SIZE: usize = 8 << 20;

/// A bump allocator over a static buffer of [`SIZE`] bytes, falling back to
/// the system allocator when full.
pub struct Arena {
    buf: UnsafeCell<[u8; SIZE]>,
    /// Offset of the first free byte in `buf`.
    top: AtomicUsize,
}

// SAFETY: `buf` is only reached through `top`, which hands out disjoint
// ranges with atomic compare-and-swap.
unsafe impl Sync for Arena {}

impl Arena {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Arena {
        Arena {
            buf: UnsafeCell::new([0; SIZE]),
            top: AtomicUsize::new(0),
        }
    }

    fn base(&self) -> usize {
        self.buf.get() as usize
    }

    fn contains(&self, ptr: *mut u8) -> bool {
        let p = ptr as usize;
        p >= self.base() && p < self.base() + SIZE
    }

    /// A range of `layout` in the buffer, or `None` when it does not fit.
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        let base = self.base();
        let mut top = self.top.load(Ordering::Relaxed);
        loop {
            let start = (base + top).next_multiple_of(layout.align()) - base;
            let end = start.checked_add(layout.size())?;
            if end > SIZE {
                return None;
            }
            match self
                .top
                .compare_exchange_weak(top, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some((base + start) as *mut u8),
                Err(now) => top = now,
            }
        }
    }

    /// Takes back `[ptr, ptr + size)` if it is the latest allocation.
    fn unbump(&self, ptr: *mut u8, size: usize) -> bool {
        let start = ptr as usize - self.base();
        self.top
            .compare_exchange(start + size, start, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

// SAFETY: every pointer returned is either a fresh, properly aligned range of
// the buffer that no other allocation overlaps (see `bump`), or comes from
// `System`; frees and reallocs tell the two apart by address.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(p) => p,
            // SAFETY: forwarded with the caller's guarantees.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = self.bump(layout);
        match p {
            // Freed ranges are handed out again only by `unbump` followed by
            // a new allocation at the same place: it may hold old bytes.
            Some(p) => {
                // SAFETY: `p` is valid for `layout.size()` bytes.
                unsafe { p.write_bytes(0, layout.size()) };
                p
            }
            // SAFETY: forwarded with the caller's guarantees.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.contains(ptr) {
            self.unbump(ptr, layout.size());
        } else {
            // SAFETY: `ptr` came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.contains(ptr) {
            // SAFETY: `ptr` came from `System` with this layout.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // The latest allocation grows or shrinks in place.
        let start = ptr as usize - self.base();
        let (old_end, new_end) = (start + layout.size(), start + new_size);
        if new_end <= SIZE
            && self
                .top
                .compare_exchange(old_end, new_end, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: `layout.align()` is a valid alignment and `new_size` is
        // non-zero (it is larger than the old size).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a valid layout.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both ranges are valid for `layout.size()` bytes and
            // distinct allocations.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size()) };
            // SAFETY: `ptr` is a live allocation of `layout`.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh arena on the heap (an 8 MiB value does not fit a test
    /// thread's stack on its way into a `Box`); all zeroes is a valid,
    /// empty arena.
    fn arena() -> &'static Arena {
        let p = unsafe { std::alloc::alloc_zeroed(Layout::new::<Arena>()) };
        assert!(!p.is_null());
        unsafe { &*(p as *const Arena) }
    }

    #[test]
    fn bumps_reuses_the_latest_and_falls_back_to_the_system() {
        let a = arena();
        let l8 = Layout::from_size_align(8, 8).unwrap();
        unsafe {
            let p = a.alloc(l8);
            assert!(a.contains(p) && (p as usize).is_multiple_of(8));
            let q = a.alloc(Layout::from_size_align(3, 1).unwrap());
            assert_eq!(q as usize, p as usize + 8);
            // Growing the latest allocation stays in place.
            let q2 = a.realloc(q, Layout::from_size_align(3, 1).unwrap(), 100);
            assert_eq!(q2, q);
            // Growing an older one moves it, with its bytes.
            p.write_bytes(7, 8);
            let p2 = a.realloc(p, l8, 64);
            assert_ne!(p2, p);
            assert_eq!(std::slice::from_raw_parts(p2, 8), &[7; 8]);
            // Freeing the latest takes the space back.
            a.dealloc(p2, Layout::from_size_align(64, 8).unwrap());
            let p3 = a.alloc_zeroed(Layout::from_size_align(64, 8).unwrap());
            assert_eq!(p3, p2);
            assert_eq!(std::slice::from_raw_parts(p3, 64), &[0; 64]);
            // Too big for what is left: the system allocator.
            let big = Layout::from_size_align(SIZE, 16).unwrap();
            let b = a.alloc(big);
            assert!(!b.is_null() && !a.contains(b));
            let b2 = a.realloc(b, big, SIZE + 16);
            assert!(!a.contains(b2));
            a.dealloc(b2, Layout::from_size_align(SIZE + 16, 16).unwrap());
        }
    }

    #[test]
    fn threads_get_disjoint_ranges() {
        let a = arena();
        let l = Layout::from_size_align(24, 8).unwrap();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..1000)
                        .map(|_| unsafe { a.alloc(l) } as usize)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<usize> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort();
        assert!(all.windows(2).all(|w| w[1] - w[0] >= 24));
    }
}
