//! This tab's memory, for [`crate::kv_fit`]: how much more the module can hold.
//!
//! wasm32 addresses 4 GiB, and the module's memory only ever grows (freed bytes are
//! reused, never returned). So the room left is that limit less the bytes allocated
//! now, which the module's allocator counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use wasm_bindgen::prelude::*;

/// All that wasm32 addresses.
const ADDRESSABLE: u64 = 4 << 30;
/// Kept for everything but KV caches: the stack and statics, activations and scratch, a G
/// conversion's new weights, what the JS side copies in.
const HEADROOM: u64 = 256 << 20;

/// The memory the module may grow to: all it addresses, unless the page says less.
static LIMIT: AtomicU64 = AtomicU64::new(ADDRESSABLE);

/// Plan KV caches as if this tab could hold only `mib` MiB (0: all that wasm32
/// addresses), e.g. to see what a phone would get (the page's `?memory=`).
#[wasm_bindgen(js_name = setMemoryLimit)]
pub fn set_memory_limit(mib: u32) {
    let bytes = if mib == 0 { ADDRESSABLE } else { (u64::from(mib) << 20).min(ADDRESSABLE) };
    LIMIT.store(bytes, Ordering::Relaxed);
}

/// Bytes the module can still allocate for KV caches.
pub(super) fn room() -> u64 {
    let allocated = ALLOCATED.load(Ordering::Relaxed) as u64;
    LIMIT.load(Ordering::Relaxed).saturating_sub(allocated + HEADROOM)
}

/// Bytes allocated and not yet freed.
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting what it holds in [`ALLOCATED`].
struct Counting;

#[global_allocator]
static COUNTING: Counting = Counting;

// SAFETY: every call is passed on to `System` unchanged; only the count is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
            ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        q
    }
}
