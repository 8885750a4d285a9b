//! SNI resolution does no heap allocation (SPEC §4): the lookup behind
//! `SniResolver::resolve` — `ArcSwap::load`, the case-insensitive name lookup and the
//! `Arc` clone — is counted with a per-thread counting allocator, after a warm-up,
//! across hits, misses and mixed-case names. The DNS-side tenant lookup is counted too.
//!
//! Its own test binary, because it installs a global allocator.

#[path = "../benches/support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn sni_and_dns_lookups_never_allocate() {
    let shared = support::shared(10_000);
    let names: Vec<String> = [
        "mta-sts.t0000001.bench.example".to_owned(),
        "MTA-STS.T0009999.Bench.Example".to_owned(),
        "mta-sts.t0004242.BENCH.example".to_owned(),
        "mta-sts.unknown.example".to_owned(),
        "mta-sts.t0010000.bench.example".to_owned(),
        "t0000001.bench.example".to_owned(),
        "x".repeat(300),
        String::new(),
    ]
    .into();
    // Warm-up: the first `load()` on a thread registers it with arc-swap.
    for name in &names {
        let _ = shared.load().certificate_for(name).cloned();
    }
    let mut hits = 0;
    let before = allocations();
    for _ in 0..1000 {
        for name in &names {
            // Exactly what SniResolver::resolve does with `server_name()`.
            if let Some(cert) = shared.load().certificate_for(name).cloned() {
                hits += 1;
                std::hint::black_box(cert);
            }
            // The DNS side: tenant lookup by a randomly cased name.
            std::hint::black_box(shared.load().tenant("T0000042.bench.EXAMPLE").map(|t| t.id));
        }
    }
    let after = allocations();
    assert_eq!(hits, 3000, "three of the names are tenants");
    assert_eq!(after - before, 0, "allocations on the lookup path");
}

#[test]
fn the_counter_does_count() {
    let before = allocations();
    std::hint::black_box(vec![1u8; 16]);
    assert!(allocations() > before);
}
