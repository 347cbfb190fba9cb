//! The soak harness itself: its latency bookkeeping takes the same memory however long it
//! runs (so the memory it watches is the library's), and a short soak on SQLite answers
//! every request and fills in every window.

use std::time::Duration;

use cloakroom_reliability::crash::{self, DiskStore};
use cloakroom_reliability::soak::{self, Latencies};

#[test]
fn latencies_take_the_same_memory_however_many_are_recorded() {
    let mut latencies = Latencies::new();
    let empty = latencies.footprint();
    for micros in 1..=1_000_000u64 {
        latencies.record(Duration::from_micros(micros));
    }
    assert_eq!(latencies.footprint(), empty);
    assert_eq!(latencies.count(), 1_000_000);
    // Three significant digits: within 0.1% of the exact quantiles.
    assert!((latencies.quantile_ms(0.50) - 500.0).abs() <= 0.5);
    assert!((latencies.quantile_ms(0.99) - 990.0).abs() <= 1.0);
    latencies.record(Duration::from_secs(3600));
    assert!(
        latencies.quantile_ms(1.0) >= 59_000.0,
        "a slower one counts as a minute"
    );
    latencies.reset();
    assert_eq!((latencies.count(), latencies.quantile_ms(0.99)), (0, 0.0));
    assert_eq!(latencies.footprint(), empty);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_on_sqlite_answers_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let store = crash::open(DiskStore::Sqlite, dir.path()).await.unwrap();
    let report = soak::run("sqlite", store, Duration::from_millis(1200), 4, 3).await;
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(report.windows.len(), 3);
    for window in &report.windows {
        assert!(window.requests > 0, "{report:?}");
        assert!(
            window.p50_ms > 0.0 && window.p99_ms >= window.p50_ms,
            "{report:?}"
        );
        if cfg!(target_os = "linux") {
            assert!(window.rss_kib > 0 && window.anon_kib > 0, "{report:?}");
            assert!(window.anon_kib <= window.rss_kib, "{report:?}");
        }
    }
    assert_eq!(
        report.requests,
        report.windows.iter().map(|w| w.requests).sum::<u64>()
    );
}
