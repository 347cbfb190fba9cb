//! One connection type over a single node (reconnecting) and a cluster (replaced by a
//! fresh one when it stops answering).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::SingleNodeRoutingInfo;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// A connection to a single node or to a cluster. Cheap to clone; clones share the
/// underlying multiplexed connection.
#[derive(Clone)]
pub enum Connection {
    /// A single node, reconnecting on its own after failures.
    Single(ConnectionManager),
    /// A Redis Cluster, following redirections and topology changes.
    Cluster(Cluster),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The connection counts as stalled when, over at least two operation timeouts (and at
/// least `STALL_SPAN_MIN`) from the start of the first failed call, at least
/// `STALL_FAILURES` calls failed without an answer (timed out, or their connection failed)
/// and at most one call was answered for every `STALL_RATIO` that failed. While a
/// failover's lost shard fails for seconds, the other shards' answers keep the ratio far
/// from that; and the pause of every shard while redis-rs refreshes the topology after a
/// kill (about one response timeout) is shorter than the span.
const STALL_FAILURES: u32 = 3;
const STALL_SPAN_MIN: Duration = Duration::from_secs(1);
const STALL_RATIO: u32 = 4;
/// Failures are counted in a window that starts at the first one; a window older than
/// this many spans (and `WINDOW_MIN`) starts again.
const WINDOW_SPANS: u32 = 3;
const WINDOW_MIN: Duration = Duration::from_secs(5);
/// The wait after a rebuild before another, doubled by each rebuild that was not followed
/// by a healthy window, up to the maximum.
const REBUILD_BACKOFF_MIN: Duration = Duration::from_secs(1);
const REBUILD_BACKOFF_MAX: Duration = Duration::from_secs(16);

/// A Redis Cluster connection that replaces itself when it stops answering.
///
/// redis-rs 0.32's cluster connection drives every request of every shard from one
/// background task, which stops serving requests while it refreshes the topology or
/// reconnects; after a primary dies it has been seen never to serve again (every call on
/// every shard timing out). When calls keep failing that way, a fresh connection (new
/// node connections, a fresh topology from the seed nodes) is built in the background and
/// swapped in for later calls. Calls take the current connection without a lock.
#[derive(Clone)]
pub struct Cluster(Arc<Shared>);

struct Shared {
    current: ArcSwap<ClusterConnection>,
    client: ClusterClient,
    /// Bound on building a fresh connection.
    connect_bound: Duration,
    /// A call dropped unanswered after this long (its caller's timeout) counts as failed.
    stalled_after: Duration,
    /// Whether `health` counts failures: answered calls only read this flag.
    failing: AtomicBool,
    health: Mutex<Health>,
    rebuilds: AtomicU64,
}

struct Health {
    /// How long calls must have gone unanswered.
    span: Duration,
    /// How long a window of calls lasts.
    window_length: Duration,
    /// Calls since the first one that failed, if one did within `window_length`.
    window: Option<Window>,
    rebuilding: bool,
    /// No rebuild starts before this.
    next_rebuild: Option<Instant>,
    backoff: Duration,
    /// When the current connection was swapped in: calls started before then failed on
    /// the old one and say nothing about it.
    swapped_at: Option<Instant>,
}

impl Health {
    /// Health for calls bounded by `operation_timeout`.
    fn new(operation_timeout: Duration) -> Self {
        let span = (operation_timeout * 2).max(STALL_SPAN_MIN);
        Self {
            span,
            window_length: (span * WINDOW_SPANS).max(WINDOW_MIN),
            window: None,
            rebuilding: false,
            next_rebuild: None,
            backoff: REBUILD_BACKOFF_MIN,
            swapped_at: None,
        }
    }

    /// Counts an answered call; true when no failure is recent any more (nothing left
    /// to watch).
    fn answered(&mut self, now: Instant) -> bool {
        match &mut self.window {
            Some(window) if now.saturating_duration_since(window.start) <= self.window_length => {
                window.answers = window.answers.saturating_add(1);
                false
            }
            _ => {
                self.window = None;
                self.backoff = REBUILD_BACKOFF_MIN;
                true
            }
        }
    }

    /// Counts a call started at `started` that failed without an answer; true when the
    /// connection is to be rebuilt now.
    fn failed(&mut self, started: Instant, now: Instant) -> bool {
        if self.swapped_at.is_some_and(|swapped| started < swapped) {
            // It failed on the connection replaced since: nothing about this one.
            return false;
        }
        let mut window = match self.window {
            Some(window) if now.saturating_duration_since(window.start) <= self.window_length => {
                window
            }
            _ => Window {
                start: started,
                failures: 0,
                answers: 0,
            },
        };
        window.start = window.start.min(started);
        window.failures = window.failures.saturating_add(1);
        self.window = Some(window);
        let stalled = window.failures >= STALL_FAILURES
            && now.saturating_duration_since(window.start) >= self.span
            && window.answers.saturating_mul(STALL_RATIO) <= window.failures;
        stalled && !self.rebuilding && self.next_rebuild.is_none_or(|next| now >= next)
    }

    /// A rebuild ended at `now`, its connection swapped in or not.
    fn rebuilt(&mut self, swapped: bool, now: Instant) {
        self.rebuilding = false;
        self.next_rebuild = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(REBUILD_BACKOFF_MAX);
        if swapped {
            self.swapped_at = Some(now);
            self.window = None;
        }
    }
}

#[derive(Clone, Copy)]
struct Window {
    /// When the first failed call started.
    start: Instant,
    failures: u32,
    answers: u32,
}

impl Cluster {
    /// Wraps `connection`, made by `client`. `connect_bound` bounds building another;
    /// `stalled_after` is the callers' operation timeout.
    pub fn new(
        client: ClusterClient,
        connection: ClusterConnection,
        connect_bound: Duration,
        stalled_after: Duration,
    ) -> Self {
        Self(Arc::new(Shared {
            current: ArcSwap::from_pointee(connection),
            client,
            connect_bound,
            stalled_after,
            failing: AtomicBool::new(false),
            health: Mutex::new(Health::new(stalled_after)),
            rebuilds: AtomicU64::new(0),
        }))
    }

    /// How many times the connection was replaced by a fresh one.
    pub fn rebuilds(&self) -> u64 {
        self.0.rebuilds.load(Ordering::Relaxed)
    }

    /// Sends `pipeline` to the node `route` names.
    pub async fn route_pipeline(
        &self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
        route: SingleNodeRoutingInfo,
    ) -> RedisResult<Vec<Value>> {
        let mut connection = self.0.connection();
        let call = Call::start(&self.0);
        call.finish(
            connection
                .route_pipeline(pipeline, offset, count, route)
                .await,
        )
    }
}

impl ConnectionLike for Cluster {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let mut connection = self.0.connection();
        let call = Call::start(&self.0);
        Box::pin(async move { call.finish(connection.req_packed_command(cmd).await) })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut connection = self.0.connection();
        let call = Call::start(&self.0);
        Box::pin(
            async move { call.finish(connection.req_packed_commands(cmd, offset, count).await) },
        )
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl Shared {
    fn connection(&self) -> ClusterConnection {
        ClusterConnection::clone(&self.current.load())
    }

    fn health(&self) -> MutexGuard<'_, Health> {
        // The guarded code cannot panic; a poisoned lock still holds consistent counts.
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A call got an answer (a value or a server's error): the connection works.
    fn answered(&self) {
        // The hot path: one read of a flag that is false while the cluster is healthy.
        if self.failing.load(Ordering::Relaxed) && self.health().answered(Instant::now()) {
            self.failing.store(false, Ordering::Relaxed);
        }
    }

    /// A call started at `started` failed without an answer.
    fn failed(self: &Arc<Self>, started: Instant) {
        let mut health = self.health();
        self.failing.store(true, Ordering::Relaxed);
        if !health.failed(started, Instant::now()) {
            return;
        }
        // Rebuilding needs a runtime to run on; without one (a call dropped while its
        // runtime shuts down) there is nothing left to serve.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        health.rebuilding = true;
        drop(health);
        tracing::warn!("the Redis Cluster connection stopped answering: building a fresh one");
        runtime.spawn(Arc::clone(self).rebuild());
    }

    /// Builds a fresh connection and swaps it in; on failure the old one stays.
    async fn rebuild(self: Arc<Self>) {
        let fresh =
            tokio::time::timeout(self.connect_bound, self.client.get_async_connection()).await;
        let mut health = self.health();
        let swapped = matches!(fresh, Ok(Ok(_)));
        health.rebuilt(swapped, Instant::now());
        match fresh {
            Ok(Ok(connection)) => {
                self.current.store(Arc::new(connection));
                self.rebuilds.fetch_add(1, Ordering::Relaxed);
                tracing::info!("the Redis Cluster connection was rebuilt");
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not rebuild the Redis Cluster connection");
            }
            Err(_) => tracing::warn!(
                "could not rebuild the Redis Cluster connection within {:?}",
                self.connect_bound
            ),
        }
    }
}

/// One call on the cluster connection, reporting how it ended; dropped unfinished after
/// its caller's timeout, it counts as failed.
struct Call<'a> {
    shared: &'a Arc<Shared>,
    started: Instant,
    finished: bool,
}

impl<'a> Call<'a> {
    fn start(shared: &'a Arc<Shared>) -> Self {
        Self {
            shared,
            started: Instant::now(),
            finished: false,
        }
    }

    fn finish<T>(mut self, result: RedisResult<T>) -> RedisResult<T> {
        self.finished = true;
        match &result {
            Err(error) if unanswered(error) => self.shared.failed(self.started),
            _ => self.shared.answered(),
        }
        result
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if !self.finished && self.started.elapsed() >= self.shared.stalled_after / 2 {
            self.shared.failed(self.started);
        }
    }
}

/// Whether `error` means no server answered: a timeout, or a connection that failed. A
/// server's own error (a redirection, `CLUSTERDOWN`, a script error) is an answer.
fn unanswered(error: &RedisError) -> bool {
    error.is_timeout()
        || error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.kind() == ErrorKind::ClusterConnectionNotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    /// Operation timeout of the calls in these tests: a span of 1 s.
    const TIMEOUT: Duration = Duration::from_millis(500);

    /// Calls failing every 100 ms from `t0` until one says to rebuild: when that was.
    fn first_rebuild(health: &mut Health, t0: Instant, answers_per_failure: u32) -> Option<u64> {
        (0..100u64).find_map(|step| {
            let now = t0 + 100 * MS * u32::try_from(step).unwrap();
            for _ in 0..answers_per_failure {
                health.answered(now);
            }
            health.failed(now, now).then_some(step * 100)
        })
    }

    #[test]
    fn a_connection_that_stops_answering_is_rebuilt_after_a_second() {
        let t0 = Instant::now();
        let mut health = Health::new(TIMEOUT);
        assert_eq!(first_rebuild(&mut health, t0, 0), Some(1000));
        // Calls that time out count from their start: three 1-s timeouts ending together.
        let mut health = Health::new(TIMEOUT);
        let end = t0 + 1000 * MS;
        assert!(!health.failed(t0, end));
        assert!(!health.failed(t0 + MS, end));
        assert!(health.failed(t0 + 2 * MS, end));
    }

    #[test]
    fn a_pause_of_one_timeout_rebuilds_nothing_and_a_longer_one_does() {
        // With 1-s timeouts, every call in flight during a 1-s pause fails, ending within
        // about 1.05 s of the first one's start.
        let t0 = Instant::now();
        let mut health = Health::new(Duration::from_secs(1));
        for call in 0..30u32 {
            let started = t0 + 2 * MS * call;
            assert!(!health.failed(started, started + 1000 * MS));
        }
        // Still unanswered a second later: stalled.
        let t1 = t0 + 1100 * MS;
        assert!(!health.failed(t1, t1 + 850 * MS));
        assert!(health.failed(t1, t1 + 1000 * MS));
    }

    #[test]
    fn a_failover_answered_by_the_other_shards_rebuilds_nothing() {
        let t0 = Instant::now();
        // One shard of three down: two answers for every failure.
        assert_eq!(first_rebuild(&mut Health::new(TIMEOUT), t0, 2), None);
        // A stall with a few stray answers still counts.
        let mut health = Health::new(TIMEOUT);
        let mut rebuild = None;
        for step in 0..40u32 {
            let now = t0 + 100 * MS * step;
            if step % 10 == 0 {
                health.answered(now);
            }
            if health.failed(now, now) {
                rebuild = Some(step);
                break;
            }
        }
        assert_eq!(rebuild, Some(10));
    }

    #[test]
    fn rebuilds_take_turns_and_back_off() {
        let t0 = Instant::now();
        let mut health = Health::new(TIMEOUT);
        assert_eq!(first_rebuild(&mut health, t0, 0), Some(1000));
        health.rebuilding = true;
        let t1 = t0 + 1500 * MS;
        assert!(!health.failed(t1, t1), "one rebuild at a time");
        health.rebuilt(false, t1);
        assert!(
            !health.failed(t1 + 500 * MS, t1 + 500 * MS),
            "1 s after a rebuild"
        );
        assert!(health.failed(t1 + 1000 * MS, t1 + 1000 * MS));
        health.rebuilding = true;
        let t2 = t1 + 1100 * MS;
        health.rebuilt(true, t2);
        // Calls that started on the replaced connection say nothing about the new one.
        for started in 0..10 {
            assert!(!health.failed(t2 - MS * started, t2 + 3000 * MS));
        }
        // The second rebuild waits 2 s, the next 4 s...
        let t3 = t2 + 1000 * MS;
        assert_eq!(first_rebuild(&mut health, t3, 0), Some(1000));
        health.rebuilding = true;
        health.rebuilt(true, t3 + 1000 * MS);
        let t4 = t3 + 1000 * MS;
        assert_eq!(first_rebuild(&mut health, t4, 0), Some(4000));
        // ...until the calls are answered again for a whole window.
        health.rebuilt(true, t4 + 4000 * MS);
        assert!(health.answered(t4 + 4000 * MS + health.window_length + MS));
        assert_eq!(health.backoff, REBUILD_BACKOFF_MIN);
    }
}
