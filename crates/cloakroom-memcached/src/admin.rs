//! The 256 all-sessions buckets and the admin operations on them (purge, listing, and the
//! look-up by handle in the store itself): memcached cannot enumerate its keys reliably, so
//! these read the buckets (admin tools only, never the request path).

use cloakroom::{ListQuery, SessionEntry, StoreError};

use crate::MemcachedStore;

impl MemcachedStore {
    /// The all-sessions index bucket of `key`: one of 256, by its first byte, so admin
    /// look-ups by handle read one bucket and no bucket draws every writer.
    pub(crate) fn bucket(&self, first_byte: u8) -> String {
        format!("{}ai:{first_byte:02x}", self.prefix)
    }

    /// The live sessions of one all-sessions bucket, pruning it as it goes.
    pub(crate) async fn scan_bucket(
        &self,
        first_byte: u8,
    ) -> Result<Vec<SessionEntry>, StoreError> {
        let legacy = format!("{}all:{first_byte:02x}", self.prefix);
        Ok(self
            .scan(&self.bucket(first_byte), &legacy, &|_| true)
            .await?
            .live)
    }

    /// `SessionStore::purge_expired`: memcached expires sessions natively, so there are no
    /// records to purge; this prunes dead keys from the all-sessions index (run it
    /// periodically, as `cloakroom purge` does). Returns 0: no record was deleted.
    pub(crate) async fn prune_buckets(&self) -> Result<u64, StoreError> {
        for first_byte in 0..=u8::MAX {
            self.scan_bucket(first_byte).await?;
        }
        Ok(0)
    }

    /// `SessionStore::list_sessions`: the user's index, or every bucket.
    pub(crate) async fn list(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        let mut keys = Vec::new();
        match &query.user {
            Some(user) => keys.extend(
                self.scan_user(user)
                    .await?
                    .live
                    .iter()
                    .map(|entry| entry.key),
            ),
            None => {
                for first_byte in 0..=u8::MAX {
                    let bucket = self.scan_bucket(first_byte).await?;
                    keys.extend(bucket.iter().map(|entry| entry.key));
                }
            }
        }
        let mut entries = Vec::new();
        for key in query.candidates(keys) {
            if entries.len() >= query.limit {
                break;
            }
            match self.read(&key).await {
                Ok(Some((record, _))) => entries.push(SessionEntry { key, record }),
                // A corrupt record is absent (DESIGN, failure policy): skipped, not fatal.
                Ok(None) | Err(StoreError::Corrupt(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(entries)
    }
}
