//! Soak: full load for a long time on one store, watching resident memory, p99 latency
//! and errors window by window. Each client keeps one session, increments and reads it,
//! and every 50th request logs out and starts afresh, so the store's size stays bounded
//! and any growth in memory is the process's own.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use cloakroom::SessionStore;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::{anon_kib, app, rss_kib, Client};

/// Latencies of one window, in microseconds, in a histogram of fixed size.
///
/// The soak watches this process's memory, so its own bookkeeping must not grow with the
/// load: a `Vec` of every sample (what this harness kept before) reached megabytes per
/// window and left the allocator holding them (finding 5 of `RELIABILITY.md`). Recording
/// here never allocates; quantiles are within 0.1%.
pub struct Latencies(Histogram<u64>);

impl Latencies {
    /// The slowest latency told apart from others: a minute; slower ones count as a minute.
    const MAX_MICROS: u64 = 60_000_000;

    /// An empty histogram, 1 µs to a minute, three significant digits.
    pub fn new() -> Self {
        Self(
            Histogram::new_with_bounds(1, Self::MAX_MICROS, 3)
                .expect("the bounds are constant and valid"),
        )
    }

    /// Counts one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.max(1));
    }

    /// Latencies counted since the last [`reset`](Self::reset).
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The `q`-quantile (0–1) in milliseconds; 0 for none.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    /// Forgets every count, keeping the memory for the next window.
    pub fn reset(&mut self) {
        self.0.reset();
    }

    /// Bytes the counts take: the same however many latencies are recorded.
    pub fn footprint(&self) -> usize {
        self.0.distinct_values() * std::mem::size_of::<u64>()
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

/// One window of the soak.
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    /// Seconds since the start, at the window's end.
    pub at_s: f64,
    /// Requests answered in the window.
    pub requests: u64,
    /// Errors (any status but 200) in the window.
    pub errors: u64,
    /// p50 latency, ms.
    pub p50_ms: f64,
    /// p99 latency, ms.
    pub p99_ms: f64,
    /// Resident memory at the window's end, KiB.
    pub rss_kib: u64,
    /// The anonymous part of it (heap, allocator arenas, stacks; the rest is mapped files
    /// such as this program's code), KiB.
    pub anon_kib: u64,
}

/// What a soak showed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SoakReport {
    /// The store.
    pub store: String,
    /// Duration, seconds.
    pub seconds: f64,
    /// Concurrent clients.
    pub clients: usize,
    /// Requests answered.
    pub requests: u64,
    /// Requests per second.
    pub throughput: f64,
    /// Errors (target 0).
    pub errors: u64,
    /// Resident memory after the first window (the baseline), KiB.
    pub rss_baseline_kib: u64,
    /// Highest resident memory after the baseline, KiB.
    pub rss_max_kib: u64,
    /// Resident memory at the end, KiB.
    pub rss_end_kib: u64,
    /// Growth of the highest over the baseline, percent (target within 10).
    pub rss_growth_pct: f64,
    /// p99 of the second window, ms (the first warms up).
    pub p99_first_ms: f64,
    /// p99 of the last window, ms.
    pub p99_last_ms: f64,
    /// The worst window p99, ms.
    pub p99_max_ms: f64,
    /// Every window.
    pub windows: Vec<Window>,
}

impl SoakReport {
    /// Whether memory stayed flat (10%), no request failed, and p99 did not drift
    /// (last window within 2x of the first after warm-up, or under 5 ms).
    pub fn passed(&self) -> bool {
        self.errors == 0
            && self.rss_growth_pct <= 10.0
            && (self.p99_last_ms <= self.p99_first_ms * 2.0 || self.p99_last_ms < 5.0)
    }
}

/// Soaks `store` for `duration` with `clients` clients, in `windows` windows.
pub async fn run(
    name: &str,
    store: Arc<dyn SessionStore>,
    duration: Duration,
    clients: usize,
    windows: u32,
) -> SoakReport {
    let app = app(store);
    let latencies: Arc<Mutex<Latencies>> = Arc::default();
    let errors = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (app, latencies, errors, running) = (
            app.clone(),
            Arc::clone(&latencies),
            Arc::clone(&errors),
            Arc::clone(&running),
        );
        tasks.push(tokio::spawn(async move {
            let mut client = Client::default();
            let mut step = 0u64;
            while running.load(Ordering::Relaxed) {
                step += 1;
                let (method, path) = match step % 50 {
                    0 => (Method::POST, "/logout"),
                    s if s % 2 == 0 => (Method::GET, "/read"),
                    _ => (Method::POST, "/incr"),
                };
                let answer = client.call(&app, method, path).await;
                if answer.status != StatusCode::OK {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                latencies
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .record(answer.latency);
            }
        }));
    }
    let started = Instant::now();
    let window = duration / windows.max(1);
    let mut report = SoakReport {
        store: name.to_owned(),
        clients,
        ..SoakReport::default()
    };
    let mut errors_before = 0;
    for _ in 0..windows.max(1) {
        tokio::time::sleep(window).await;
        let (requests, p50_ms, p99_ms) = {
            let mut window = latencies.lock().unwrap_or_else(PoisonError::into_inner);
            let figures = (
                window.count(),
                window.quantile_ms(0.50),
                window.quantile_ms(0.99),
            );
            window.reset();
            figures
        };
        let errors_now = errors.load(Ordering::Relaxed);
        report.windows.push(Window {
            at_s: started.elapsed().as_secs_f64(),
            requests,
            errors: errors_now - errors_before,
            p50_ms,
            p99_ms,
            rss_kib: rss_kib(),
            anon_kib: anon_kib(),
        });
        errors_before = errors_now;
    }
    running.store(false, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.requests = report.windows.iter().map(|w| w.requests).sum();
    report.throughput = report.requests as f64 / report.seconds;
    report.errors = errors.load(Ordering::Relaxed);
    let settled = &report.windows[report.windows.len().min(1)..];
    let settled = if settled.is_empty() {
        &report.windows[..]
    } else {
        settled
    };
    report.rss_baseline_kib = settled.first().map_or(0, |w| w.rss_kib);
    report.rss_max_kib = settled.iter().map(|w| w.rss_kib).max().unwrap_or(0);
    report.rss_end_kib = settled.last().map_or(0, |w| w.rss_kib);
    report.rss_growth_pct = if report.rss_baseline_kib == 0 {
        0.0
    } else {
        (report.rss_max_kib as f64 / report.rss_baseline_kib as f64 - 1.0) * 100.0
    };
    report.p99_first_ms = settled.first().map_or(0.0, |w| w.p99_ms);
    report.p99_last_ms = settled.last().map_or(0.0, |w| w.p99_ms);
    report.p99_max_ms = settled.iter().map(|w| w.p99_ms).fold(0.0, f64::max);
    report
}
