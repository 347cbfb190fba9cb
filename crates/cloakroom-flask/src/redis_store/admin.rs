//! The admin look-ups: every session under the prefix, found by `SCAN`.

use cloakroom::{SessionEntry, SessionStore, StoreError};

use super::store::SCAN_BATCH;
use super::FlaskRedisStore;

impl FlaskRedisStore {
    /// Every session key under the prefix, in `SCAN` batches, each once (`SCAN` may return
    /// a key twice when the keyspace is resized during it).
    async fn scan_keys(&self) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection.clone();
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .run(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(format!("{}*", glob_escape(&self.prefix)))
                        .arg("COUNT")
                        .arg(SCAN_BATCH)
                        .query_async(&mut connection),
                )
                .await?;
            keys.extend(batch);
            if next == 0 {
                keys.sort_unstable();
                keys.dedup();
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Every live, readable session, in key order.
    pub(super) async fn all_sessions(&self) -> Result<Vec<SessionEntry>, StoreError> {
        let mut entries = Vec::new();
        for redis_key in self.scan_keys().await? {
            let Some(key) = self.store_key(&redis_key) else {
                continue;
            };
            match self.load(&key).await {
                Ok(Some(record)) => entries.push(SessionEntry { key, record }),
                Ok(None) | Err(StoreError::Corrupt(_)) => {}
                Err(error) => return Err(error),
            }
        }
        entries.sort_by_key(|entry| entry.key);
        Ok(entries)
    }
}

/// `text` with the glob characters of `SCAN MATCH` escaped, so a prefix matches as written.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
