//! Admin look-ups for the CLI: find a session by handle, list sessions. They scan every
//! node, so they are never on the request path.

use cloakroom::{ListQuery, SessionEntry, SessionHandle, StoreError, StoreKey};

use super::hash::decode_listed;
use super::{store_error, RedisStore};
use crate::connection::Connection;

impl RedisStore {
    /// Every session key matching `pattern`, on every node.
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        match &self.connection {
            Connection::Single(manager) => {
                self.scan_node(&mut manager.clone(), pattern, &mut keys)
                    .await?
            }
            Connection::Cluster(cluster) => {
                let nodes: String = self
                    .bounded(async {
                        redis::cmd("CLUSTER")
                            .arg("NODES")
                            .query_async(&mut cluster.clone())
                            .await
                            .map_err(store_error)
                    })
                    .await?;
                for line in nodes.lines() {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let (Some(address), Some(flags)) = (fields.get(1), fields.get(2)) else {
                        continue;
                    };
                    if !flags.contains("master") || flags.contains("fail") {
                        continue;
                    }
                    let address = address.split(['@', ',']).next().unwrap_or_default();
                    let Some((host, port)) = address.rsplit_once(':') else {
                        continue;
                    };
                    let mut info = self.seed.clone();
                    info.addr = redis::ConnectionAddr::Tcp(
                        host.to_owned(),
                        port.parse()
                            .map_err(|_| StoreError::backend("bad node address"))?,
                    );
                    let client = redis::Client::open(info).map_err(store_error)?;
                    let mut node = self
                        .bounded(async {
                            client
                                .get_multiplexed_async_connection()
                                .await
                                .map_err(store_error)
                        })
                        .await?;
                    self.scan_node(&mut node, pattern, &mut keys).await?;
                }
            }
        }
        Ok(keys)
    }

    fn key_of(&self, redis_key: &str) -> Option<StoreKey> {
        let hex = redis_key
            .strip_prefix(&format!("{}s:{{", self.config.prefix))?
            .strip_suffix('}')?;
        StoreKey::from_hex(hex)
    }

    /// The live sessions among `keys`, at most `limit` of them.
    async fn entries(
        &self,
        keys: impl IntoIterator<Item = StoreKey>,
        limit: usize,
    ) -> Result<Vec<SessionEntry>, StoreError> {
        let mut entries = Vec::new();
        for key in keys {
            if entries.len() >= limit {
                break;
            }
            if let Some(record) = decode_listed(&key, self.bounded(self.read(&key)).await?) {
                entries.push(SessionEntry { key, record });
            }
        }
        Ok(entries)
    }

    /// [`SessionStore::find_by_handle`](cloakroom::SessionStore::find_by_handle).
    pub(super) async fn find(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionEntry>, StoreError> {
        let (low, _) = handle.key_range();
        let hex_prefix = &low.to_hex()[..24];
        let pattern = format!("{}s:{{{hex_prefix}*", literal_pattern(&self.config.prefix));
        let keys: Vec<StoreKey> = self
            .scan(&pattern)
            .await?
            .iter()
            .filter_map(|k| self.key_of(k))
            .filter(|k| handle.matches(k))
            .collect();
        Ok(self.entries(keys, 1).await?.into_iter().next())
    }

    /// [`SessionStore::list_sessions`](cloakroom::SessionStore::list_sessions).
    pub(super) async fn list(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        let mut keys: Vec<StoreKey> = match &query.user {
            Some(user) => self
                .list_user(user)
                .await?
                .into_iter()
                .map(|e| e.key)
                .collect(),
            None => {
                let pattern = format!("{}s:{{*", literal_pattern(&self.config.prefix));
                self.scan(&pattern)
                    .await?
                    .iter()
                    .filter_map(|k| self.key_of(k))
                    .collect()
            }
        };
        keys.sort();
        keys.dedup();
        keys.retain(|k| query.after.is_none_or(|after| *k > after));
        self.entries(keys, query.limit).await
    }

    /// One node's keys matching `pattern`, each `SCAN` batch under the operation
    /// timeout, the bound every call on the store's connections relies on (a single
    /// node's connection has no response timeout of its own).
    async fn scan_node(
        &self,
        connection: &mut impl redis::aio::ConnectionLike,
        pattern: &str,
        keys: &mut Vec<String>,
    ) -> Result<(), StoreError> {
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .bounded(async {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut *connection)
                        .await
                        .map_err(store_error)
                })
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

/// `prefix` as a `SCAN MATCH` pattern that matches it as written: `*`, `?`, `[`, `]` and
/// `\` are glob syntax there, so a prefix holding one (`app[1]:`) matched none of its keys.
pub(crate) fn literal_pattern(prefix: &str) -> String {
    prefix.chars().fold(String::new(), |mut pattern, c| {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
        pattern
    })
}
