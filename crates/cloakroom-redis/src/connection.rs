//! One connection type over a single node (reconnecting) and a cluster (replaced by a
//! fresh one while a shard stays unreachable).

mod health;
pub(crate) mod slot;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::SingleNodeRoutingInfo;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use health::Health;

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

/// A Redis Cluster connection that replaces itself while a shard stays unreachable.
///
/// redis-rs 0.32's cluster connection drives every request of every shard from one
/// background task, which serves no request while it refreshes the topology or
/// reconnects. After a primary dies it has been seen never to serve again (every call on
/// every shard timing out), or to keep routing the lost shard by the topology it read
/// before the replica took over. So the calls are watched by slot (see [`health`]): when
/// one slot's calls have failed unanswered past a failover's length, a fresh connection
/// (new node connections, the topology read again through the seed nodes) is built in the
/// background and swapped in for later calls, and again, paced, until that slot answers.
/// Calls take the current connection without a lock; each stays bounded by the response
/// timeout, so a caller gets an error, never a hang, while this goes on.
#[derive(Clone)]
pub struct Cluster(Arc<Shared>);

struct Shared {
    current: ArcSwap<ClusterConnection>,
    client: ClusterClient,
    /// Bound on building a fresh connection.
    connect_bound: Duration,
    /// A call dropped unanswered after this long (its caller's timeout) counts as failed.
    stalled_after: Duration,
    /// Whether `health` has failing slots: answered calls only read this flag then.
    failing: AtomicBool,
    health: Mutex<Health>,
    rebuilds: AtomicU64,
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
        let call = Call::start(&self.0, slot::pipeline_slot(pipeline));
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
        let call = Call::start(&self.0, slot::command_slot(cmd));
        Box::pin(async move { call.finish(connection.req_packed_command(cmd).await) })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut connection = self.0.connection();
        let call = Call::start(&self.0, slot::pipeline_slot(cmd));
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

    /// A call on `slot` got an answer (a value or a server's own error): its shard works.
    fn answered(&self, slot: u16) {
        // The hot path: one read of a flag that is false while the cluster is healthy.
        if self.failing.load(Ordering::Relaxed) {
            let mut health = self.health();
            // Cleared under the lock, so a failure counted meanwhile cannot be hidden.
            if health.answered(slot, Instant::now()) {
                self.failing.store(false, Ordering::Relaxed);
            }
        }
    }

    /// A call on `slot`, started at `started`, failed without an answer.
    fn failed(self: &Arc<Self>, slot: u16, started: Instant) {
        let mut health = self.health();
        self.failing.store(true, Ordering::Relaxed);
        let Some(failing_for) = health.failed(slot, started, Instant::now()) else {
            return;
        };
        // Rebuilding needs a runtime to run on; without one (a call dropped while its
        // runtime shuts down) there is nothing left to serve.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        health.rebuilding = true;
        drop(health);
        tracing::warn!(
            slot,
            ?failing_for,
            "a Redis Cluster slot stopped answering: building a fresh cluster connection"
        );
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

/// One call on the cluster connection to `slot`, reporting how it ended; dropped
/// unfinished after its caller's timeout, it counts as failed. A call that addresses no
/// slot (a keyless command) reports nothing.
struct Call<'a> {
    shared: &'a Arc<Shared>,
    slot: Option<u16>,
    started: Instant,
    finished: bool,
}

impl<'a> Call<'a> {
    fn start(shared: &'a Arc<Shared>, slot: Option<u16>) -> Self {
        Self {
            shared,
            slot,
            started: Instant::now(),
            finished: false,
        }
    }

    fn finish<T>(mut self, result: RedisResult<T>) -> RedisResult<T> {
        self.finished = true;
        if let Some(slot) = self.slot {
            match &result {
                Err(error) if shard_unreachable(error) => self.shared.failed(slot, self.started),
                _ => self.shared.answered(slot),
            }
        }
        result
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if let (false, Some(slot)) = (self.finished, self.slot) {
            if self.started.elapsed() >= self.shared.stalled_after / 2 {
                self.shared.failed(slot, self.started);
            }
        }
    }
}

/// Whether `error` means the slot's primary was not reached: no server answered (a
/// timeout, a connection that failed or could not be made), or redis-rs ran out of
/// retries following redirections (its topology is wrong, or the redirection points at a
/// dead node). Any other server error is an answer; `CLUSTERDOWN` too, since the cluster
/// itself says it cannot serve the slot and a fresh topology would not change that.
fn shard_unreachable(error: &RedisError) -> bool {
    error.is_timeout()
        || error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.kind(),
            ErrorKind::ClusterConnectionNotFound | ErrorKind::Moved | ErrorKind::Ask
        )
}
