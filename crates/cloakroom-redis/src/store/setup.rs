//! Connecting: [`RedisConfig`], [`SetupError`], and the single-node and cluster
//! constructors of [`RedisStore`].

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::{IntoConnectionInfo, RedisError};

use super::RedisStore;
use crate::connection::{Cluster, Connection};

/// Settings for [`RedisStore`]. The defaults suit most deployments.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// Prefix of every key (default `cloakroom:`), so several apps can share a server.
    pub prefix: String,
    /// Bound on every store operation (default 2 s); past it the operation fails with
    /// [`StoreError::Timeout`](cloakroom::StoreError::Timeout), so a dead server never
    /// hangs a request.
    pub operation_timeout: Duration,
    /// Bound on establishing a connection (default 1 s).
    pub connect_timeout: Duration,
    /// Longest wait between reconnection attempts (default 500 ms).
    pub reconnect_max_delay: Duration,
    /// Reconnection attempts per failing command before it gives up (default 2).
    pub reconnect_retries: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            prefix: "cloakroom:".to_owned(),
            operation_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            reconnect_max_delay: Duration::from_millis(500),
            reconnect_retries: 2,
        }
    }
}

/// A failure to connect, with what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL: {0}")]
    Url(#[source] RedisError),
    /// The server (or cluster) could not be reached.
    #[error("could not connect to Redis ({0}): check the URL and that the server is running")]
    Connect(#[source] RedisError),
    /// The key prefix contains `{` or `}`, which would break cluster hash tags.
    #[error("key prefix {0:?} must not contain {{ or }}")]
    Prefix(String),
}

impl RedisStore {
    /// Connects to a single node: `redis://[USER:PASSWORD@]HOST[:PORT][/DB]` (or
    /// `rediss://` with the `tls` feature).
    pub async fn connect(url: &str) -> Result<Self, SetupError> {
        Self::connect_with(url, RedisConfig::default()).await
    }

    /// Connects to a single node with `config`.
    pub async fn connect_with(url: &str, config: RedisConfig) -> Result<Self, SetupError> {
        check_prefix(&config.prefix)?;
        let client = redis::Client::open(url).map_err(SetupError::Url)?;
        let seed = client.get_connection_info().clone();
        // No response timeout: every call is inside `bounded` (the operation timeout),
        // and a second timer per call cost about 400 instructions a read and 1,400 a write.
        // A call `bounded` drops leaves its reply to be read and discarded; the connection
        // manager reconnects on its own when the connection fails.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(config.connect_timeout)
            .set_number_of_retries(config.reconnect_retries)
            .set_max_delay(
                u64::try_from(config.reconnect_max_delay.as_millis()).unwrap_or(u64::MAX),
            );
        let manager = connect_within(
            config.connect_timeout.saturating_mul(2),
            ConnectionManager::new_with_config(client, manager_config),
        )
        .await?;
        Ok(Self {
            connection: Connection::Single(manager),
            config,
            seed,
            wait: None,
        })
    }

    /// Connects to a Redis Cluster through any of its nodes (`redis://HOST:PORT` each).
    ///
    /// The store keeps one cluster connection, and replaces it with a fresh one (new node
    /// connections, the topology read again through these nodes) when a shard stays
    /// unreachable: once the calls on one slot have failed for two operation timeouts (at
    /// least a second) with none answered (timed out, lost or refused their connection, or
    /// ran out of redirections), and then again, 0.5, 1, 2, 2... s after each rebuild,
    /// until that slot answers. A failover's first seconds are expected to fail: the
    /// rebuilds only make sure the client reads the topology again after the replica took
    /// over, which redis-rs 0.32 alone was seen not to do. The fresh connection is built in
    /// the background (one at a time) and serves the calls that start after it is in
    /// place; if it cannot be built, the old one stays. Meanwhile every call stays bounded
    /// by the operation timeout and fails with a [`StoreError`](cloakroom::StoreError)
    /// (a 503 from the session layer).
    pub async fn connect_cluster(urls: &[&str], config: RedisConfig) -> Result<Self, SetupError> {
        check_prefix(&config.prefix)?;
        let seed = urls
            .first()
            .ok_or_else(|| {
                SetupError::Url(RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "no cluster node given",
                )))
            })?
            .into_connection_info()
            .map_err(SetupError::Url)?;
        // Unlike a single node, the response timeout stays: redis-rs's cluster client also
        // gives it to the node connections its background task refreshes the topology
        // with, which no caller's `bounded` covers.
        let client = ClusterClientBuilder::new(urls.to_vec())
            .connection_timeout(config.connect_timeout)
            .response_timeout(config.operation_timeout)
            .retries(u32::try_from(config.reconnect_retries).unwrap_or(u32::MAX))
            .build()
            .map_err(SetupError::Url)?;
        // Bounds the connections to the nodes and the topology query that follow them.
        let connect_bound = config
            .connect_timeout
            .saturating_mul(2)
            .saturating_add(config.operation_timeout);
        let connection = connect_within(connect_bound, client.get_async_connection()).await?;
        let connection = Cluster::new(client, connection, connect_bound, config.operation_timeout);
        Ok(Self {
            connection: Connection::Cluster(connection),
            config,
            seed,
            wait: None,
        })
    }
}

/// A prefix with `{` or `}` would change which part of a key is its cluster hash tag.
fn check_prefix(prefix: &str) -> Result<(), SetupError> {
    if prefix.contains(['{', '}']) {
        Err(SetupError::Prefix(prefix.to_owned()))
    } else {
        Ok(())
    }
}

/// Waits for a connection at most `bound`: one that takes longer fails as a connection
/// timed out, the same setup error as one refused.
async fn connect_within<T>(
    bound: Duration,
    connecting: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, SetupError> {
    match tokio::time::timeout(bound, connecting).await {
        Ok(connected) => connected.map_err(SetupError::Connect),
        Err(_) => Err(SetupError::Connect(RedisError::from(std::io::Error::from(
            std::io::ErrorKind::TimedOut,
        )))),
    }
}
