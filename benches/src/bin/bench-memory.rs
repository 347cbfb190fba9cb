//! `bench-memory LIBRARY SESSIONS`: creates SESSIONS sessions through LIBRARY's `/seed`
//! route on its memory store and prints the heap and resident-set growth per session as
//! JSON. One library per process, so freed memory never flatters the next one.

use std::alloc::System;

use cloakroom_benches::inprocess::{AxumDriver, Driver};
use cloakroom_benches::results::MemoryUse;
use cloakroom_benches::scenario::routes::SEED;
use cloakroom_benches::{Env, Library, StoreKind, Target};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

// The system allocator, counting bytes, so the heap growth per session is measured
// exactly rather than read off the resident set.
#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not yet freed.
fn live_bytes() -> usize {
    let stats = ALLOCATOR.stats();
    stats
        .bytes_allocated
        .saturating_sub(stats.bytes_deallocated)
}

fn rss_bytes() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let library = match args.next().as_deref() {
        Some("cloakroom") => Library::Cloakroom,
        Some("tower-sessions") => Library::TowerSessions,
        Some("floor") => Library::Floor,
        _ => {
            eprintln!("usage: bench-memory cloakroom|tower-sessions|floor SESSIONS");
            std::process::exit(2);
        }
    };
    let sessions: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let env = Env::from_env(std::env::temp_dir());
    let row = runtime.block_on(async {
        let router =
            cloakroom_benches::axum_apps::build(Target::new(library, StoreKind::Memory), &env)
                .await
                .expect("a memory store app");
        let driver = AxumDriver(router);
        // One session first, so lazily built statics are not counted.
        driver.call(true, SEED, None).await;
        let (heap_before, rss_before) = (live_bytes(), rss_bytes());
        for _ in 0..sessions {
            let reply = driver.call(true, SEED, None).await;
            assert!(reply.cookie.is_some(), "seeding failed: {}", reply.status);
        }
        let (heap_after, rss_after) = (live_bytes(), rss_bytes());
        let row = MemoryUse {
            library,
            sessions,
            heap_bytes: (heap_after as f64 - heap_before as f64) / sessions as f64,
            rss_bytes: (rss_after - rss_before) / sessions as f64,
        };
        drop(driver);
        row
    });
    println!("{}", serde_json::to_string(&row).expect("serializable"));
}
