//! Opt-in synchronous replication: after a write, `WAIT` until enough replicas have it.
//!
//! Redis replicates asynchronously, so a write the primary acknowledged can be lost when a
//! replica is promoted before it arrived (a revoked session back alive, a login gone).
//! `WAIT` narrows that window to nothing for writes that reached the replicas; it does not
//! make Redis strongly consistent (a failover can still pick a replica that missed a
//! write if fewer replicas acknowledged it than exist).

use std::time::Duration;

use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::FromRedisValue;

use super::{store_error, RedisStore};
use crate::connection::slot::key_slot;
use crate::connection::Connection;
use cloakroom::StoreError;

/// How many replicas must acknowledge each write, and for how long to wait.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WaitForReplicas {
    pub(crate) replicas: u32,
    pub(crate) timeout: Duration,
}

/// A write reached the primary but fewer replicas than required acknowledged it in time.
/// The write is *not* undone: it stands on the primary and may or may not survive a
/// failover. The session layer answers 503 (the error is a [`StoreError::Unavailable`]
/// whose source is this); retry, or check the replicas (`INFO replication`).
#[derive(Debug, thiserror::Error)]
#[error(
    "the write reached {acknowledged} of the {required} replicas required within {timeout:?}; \
     it may be lost if the primary fails: check that the replicas are up and connected"
)]
pub struct NotReplicated {
    /// Replicas that acknowledged the write.
    pub acknowledged: u64,
    /// Replicas required ([`RedisStore::with_wait_for_replicas`]).
    pub required: u32,
    /// How long the primary waited.
    pub timeout: Duration,
}

impl RedisStore {
    /// Waits for the replicas of the nodes holding `keys` (every primary for `None`), if
    /// this store was built [`with_wait_for_replicas`](RedisStore::with_wait_for_replicas).
    ///
    /// `WAIT` covers the writes sent earlier on the same connection; this store keeps one
    /// connection per node, so it covers the write just made (unless that connection was
    /// re-established in between, when `WAIT` has nothing to wait for). While it waits,
    /// that connection is held: other requests to the same node queue behind it.
    pub(super) async fn replicated(&self, keys: Option<&[&str]>) -> Result<(), StoreError> {
        let Some(wait) = self.wait else {
            return Ok(());
        };
        let mut command = redis::cmd("WAIT");
        // Redis refuses a timeout that overflows its clock (past i64::MAX ms, or less on
        // newer versions), so `Duration::MAX` failed every write after it was made; and it
        // waits forever on 0. A wait past the operation timeout, which bounds the write
        // and its wait together, would be cut short anyway (and a year is as good as
        // forever here).
        let year = Duration::from_secs(365 * 24 * 60 * 60);
        let longest = self.config.operation_timeout.min(year).as_millis().max(1);
        let millis = wait.timeout.as_millis().clamp(1, longest);
        command
            .arg(wait.replicas)
            .arg(u64::try_from(millis).unwrap_or(u64::MAX));
        let mut acknowledged = Vec::new();
        match (&self.connection, keys) {
            (Connection::Cluster(cluster), Some(keys)) => {
                let mut by_slot: Vec<(u16, &str)> = keys
                    .iter()
                    .map(|key| (key_slot(key.as_bytes()), *key))
                    .collect();
                by_slot.sort_unstable();
                by_slot.dedup_by_key(|(slot, _)| *slot);
                for (slot, key) in by_slot {
                    // The client sends a command to some other node when it has no
                    // connection to the slot's primary, expecting a redirection; `WAIT`
                    // has no key to be redirected by, and elsewhere it would acknowledge
                    // nothing. A keyed command first in the same batch fails (MOVED) on
                    // the wrong node, so the `WAIT` counts only on the one that wrote.
                    let mut pipeline = redis::pipe();
                    pipeline.cmd("EXISTS").arg(key).add_command(command.clone());
                    let route =
                        SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
                    let replies = cluster
                        .route_pipeline(&pipeline, 0, 2, route)
                        .await
                        .map_err(store_error)?;
                    let mut replies = replies.into_iter().map(|reply| reply.extract_error());
                    let (Some(exists), Some(waited)) = (replies.next(), replies.next()) else {
                        return Err(StoreError::backend("WAIT got no answer"));
                    };
                    exists.map_err(store_error)?;
                    acknowledged.push(
                        u64::from_redis_value(&waited.map_err(store_error)?)
                            .map_err(store_error)?,
                    );
                }
            }
            // A single node, or every primary (`WAIT` is routed to all and answers the least).
            (connection, _) => {
                acknowledged.push(
                    command
                        .query_async(&mut connection.clone())
                        .await
                        .map_err(store_error)?,
                );
            }
        }
        match acknowledged.into_iter().min() {
            Some(least) if least < u64::from(wait.replicas) => {
                Err(StoreError::unavailable(NotReplicated {
                    acknowledged: least,
                    required: wait.replicas,
                    timeout: wait.timeout,
                }))
            }
            _ => Ok(()),
        }
    }
}
