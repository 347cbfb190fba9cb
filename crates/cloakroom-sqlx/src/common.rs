//! What every SQL backend shares: identifier validation, error mapping, timeouts, and the
//! column layout of the sessions table.

use std::future::Future;
use std::time::Duration;

use cloakroom::record::{from_unix_ms, Data};
use cloakroom::{ClientMeta, Record, StoreError};
use time::OffsetDateTime;

/// The default table name.
pub const DEFAULT_TABLE: &str = "cloakroom_sessions";
/// The default bound on every store operation.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// A pooled connection idle for at least this long is pinged before it is handed out by
/// the stores' default pools (see `PostgresStore::pool_options`).
pub const IDLE_CHECK_AFTER: Duration = Duration::from_secs(5);

/// The stores' default pools' `before_acquire`: pings a connection only when it has been
/// idle for [`IDLE_CHECK_AFTER`] (a ping is a round trip; a connection in steady use is
/// alive, and one that died under load fails its query once and is replaced).
pub(crate) fn ping_if_idle<C: sqlx::Connection>(
    connection: &mut C,
    metadata: sqlx::pool::PoolConnectionMetadata,
) -> std::pin::Pin<Box<dyn Future<Output = Result<bool, sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        if metadata.idle_for >= IDLE_CHECK_AFTER {
            connection.ping().await?;
        }
        Ok(true)
    })
}

/// Errors setting a store up, with what to do about them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The table name is not a plain SQL identifier.
    #[error("table name {0:?} is not allowed: use 1 to 63 ASCII letters, digits or underscores, not starting with a digit")]
    InvalidIdentifier(String),
    /// The database could not be reached or opened.
    #[error("could not connect to the session database ({0}): check the URL and that the server is running")]
    Connect(#[source] sqlx::Error),
    /// Creating the schema failed.
    #[error("could not create the session schema ({0}): check the database user's rights")]
    Migrate(#[source] sqlx::Error),
}

/// Checks a table name so it can be spliced into SQL safely.
pub fn validate_identifier(name: &str) -> Result<(), SetupError> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(SetupError::InvalidIdentifier(name.to_owned()))
    }
}

/// A validated table name, and how the dialect writes it in SQL.
#[derive(Clone, Debug)]
pub struct TableName {
    /// The name as given, `schema.table` when qualified: a key for locks and look-ups.
    pub plain: String,
    /// The unqualified table name, as given.
    pub unqualified: String,
    /// The schema or database, if one was named.
    pub schema: Option<String>,
    /// The quoted, possibly qualified name to splice into SQL.
    pub sql: String,
    /// A prefix for index names, unique per table (`schema_table`), quoted by the caller.
    pub index_prefix: String,
}

impl TableName {
    /// Validates `table` (and `schema`) and quotes them with `quote`: validation comes
    /// first, so a bad name never reaches the database.
    pub fn new(
        schema: Option<&str>,
        table: &str,
        quote: fn(&str) -> String,
    ) -> Result<Self, SetupError> {
        validate_identifier(table)?;
        if let Some(schema) = schema {
            validate_identifier(schema)?;
        }
        let (plain, sql, index_prefix) = match schema {
            Some(schema) => (
                format!("{schema}.{table}"),
                format!("{}.{}", quote(schema), quote(table)),
                format!("{schema}_{table}"),
            ),
            None => (table.to_owned(), quote(table), table.to_owned()),
        };
        Ok(Self {
            plain,
            unqualified: table.to_owned(),
            schema: schema.map(str::to_owned),
            sql,
            index_prefix,
        })
    }
}

/// Quotes a validated identifier for PostgreSQL. PostgreSQL folds unquoted names to
/// lower case, so the name is folded before quoting: `MyTable` stays the table it named
/// before names were quoted.
pub fn quote_postgres(name: &str) -> String {
    format!("\"{}\"", name.to_ascii_lowercase())
}

/// Quotes a validated identifier for SQLite (whose names ignore case, quoted or not).
pub fn quote_sqlite(name: &str) -> String {
    format!("\"{name}\"")
}

/// Quotes a validated identifier for MySQL / MariaDB.
pub fn quote_backtick(name: &str) -> String {
    format!("`{name}`")
}

/// Maps a driver error to the store's typed error.
pub fn store_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::unavailable(error),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(error.to_string())
        }
        other => StoreError::backend(other),
    }
}

/// Whether the error is a unique-key violation (a duplicate key).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Runs a store operation under a time bound, so an unreachable database never hangs a
/// request.
pub async fn bounded<T, E: From<StoreError>>(
    limit: Duration,
    operation: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    match tokio::time::timeout(limit, operation).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Timeout(limit).into()),
    }
}

/// Deletes expired rows a batch at a time until a batch comes back short, reporting each
/// batch; `delete_batch(n)` deletes at most `n` rows in one short statement, so writers
/// never wait behind a long lock.
pub async fn purge_in_batches<F, Fut>(
    batch: usize,
    progress: &mut (dyn FnMut(u64) + Send),
    mut delete_batch: F,
) -> Result<u64, StoreError>
where
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = Result<u64, StoreError>>,
{
    let batch = batch.max(1);
    let limit = i64::try_from(batch).unwrap_or(i64::MAX);
    let mut total = 0;
    loop {
        let deleted = delete_batch(limit).await?;
        total += deleted;
        progress(deleted);
        if deleted < batch as u64 {
            return Ok(total);
        }
    }
}

/// What a `rename` statement's outcome means: one row moved, none (the old key is not
/// live), or a unique violation (the new key is taken).
pub fn rename_outcome(result: Result<u64, sqlx::Error>) -> Result<(), cloakroom::RenameError> {
    match result {
        Ok(1) => Ok(()),
        Ok(_) => Err(cloakroom::RenameError::Missing),
        Err(error) if is_unique_violation(&error) => Err(cloakroom::RenameError::Duplicate),
        Err(error) => Err(store_error(error).into()),
    }
}

/// What the follow-up to a failed compare-and-set found: the row still live means the
/// version moved (`Conflict`); no live row means it is gone (`Missing`).
pub fn failed_update<R>(live_row: Result<Option<R>, sqlx::Error>) -> cloakroom::UpdateError {
    match live_row {
        Ok(Some(_)) => cloakroom::UpdateError::Conflict,
        Ok(None) => cloakroom::UpdateError::Missing,
        Err(error) => store_error(error).into(),
    }
}

/// The columns a record is stored in, as plain values ready to bind.
pub struct Columns {
    pub data: String,
    pub created_at: i64,
    pub last_active_at: i64,
    pub idle_deadline: Option<i64>,
    pub absolute_deadline: Option<i64>,
    pub expires_at: Option<i64>,
    pub persistent: bool,
    pub user_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub auth_epoch: Option<String>,
}

impl Columns {
    pub fn of(record: &Record) -> Result<Self, StoreError> {
        use cloakroom::record::to_unix_ms;
        Ok(Self {
            data: serde_json::to_string(&record.data).map_err(StoreError::backend)?,
            created_at: to_unix_ms(record.created_at),
            last_active_at: to_unix_ms(record.last_active_at),
            idle_deadline: record.idle_deadline.map(to_unix_ms),
            absolute_deadline: record.absolute_deadline.map(to_unix_ms),
            expires_at: record.expires_at().map(to_unix_ms),
            persistent: record.persistent,
            user_id: record.user_id.clone(),
            ip: record.client.ip.clone(),
            user_agent: record.client.user_agent.clone(),
            auth_epoch: record.auth_epoch.clone(),
        })
    }
}

/// The columns every SELECT returns, in this order.
pub const SELECTED: &str = "store_key, version, data, created_at, last_active_at, idle_deadline, absolute_deadline, persistent, user_id, ip, user_agent, auth_epoch";

/// Reads a session entry from a row of any backend.
pub fn entry_from_row<'r, R>(row: &'r R) -> Result<cloakroom::SessionEntry, StoreError>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let key: Vec<u8> = row.try_get("store_key").map_err(store_error)?;
    let key = cloakroom::StoreKey::from_slice(&key)
        .ok_or_else(|| StoreError::Corrupt("store key is not 32 bytes".into()))?;
    Ok(cloakroom::SessionEntry {
        key,
        record: record_from_row(row)?,
    })
}

/// A record read from a row, or `None` if the row is corrupt: a corrupt record is logged
/// (by its handle, never raw) and treated as absent, so one bad row never fails a request.
pub fn record_or_absent<'r, R>(
    key: &cloakroom::StoreKey,
    row: Option<&'r R>,
) -> Result<Option<Record>, StoreError>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    match row.map(record_from_row).transpose() {
        Err(StoreError::Corrupt(reason)) => {
            tracing::warn!(handle = %key.handle(), %reason, "corrupt session record treated as absent");
            Ok(None)
        }
        other => other,
    }
}

/// The readable entries among `rows`; corrupt ones are logged and skipped, so a listing
/// never fails on one bad row.
pub fn entries_skipping_corrupt<'r, R>(
    rows: &'r [R],
) -> Result<Vec<cloakroom::SessionEntry>, StoreError>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        match entry_from_row(row) {
            Ok(entry) => entries.push(entry),
            Err(StoreError::Corrupt(reason)) => {
                let handle = row
                    .try_get::<Vec<u8>, _>("store_key")
                    .ok()
                    .and_then(|key| cloakroom::StoreKey::from_slice(&key))
                    .map(|key| key.handle().to_string());
                tracing::warn!(?handle, %reason, "corrupt session record skipped");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(entries)
}

/// Reads a record from a row of any backend.
pub fn record_from_row<'r, R>(row: &'r R) -> Result<Record, StoreError>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    StoredRow {
        version: row.try_get("version").map_err(store_error)?,
        data: row.try_get("data").map_err(store_error)?,
        created_at: row.try_get("created_at").map_err(store_error)?,
        last_active_at: row.try_get("last_active_at").map_err(store_error)?,
        idle_deadline: row.try_get("idle_deadline").map_err(store_error)?,
        absolute_deadline: row.try_get("absolute_deadline").map_err(store_error)?,
        persistent: row.try_get("persistent").map_err(store_error)?,
        user_id: row.try_get("user_id").map_err(store_error)?,
        ip: row.try_get("ip").map_err(store_error)?,
        user_agent: row.try_get("user_agent").map_err(store_error)?,
        auth_epoch: row.try_get("auth_epoch").map_err(store_error)?,
    }
    .into_record()
}

/// A row as read back, before it is checked.
pub struct StoredRow {
    pub version: i64,
    pub data: String,
    pub created_at: i64,
    pub last_active_at: i64,
    pub idle_deadline: Option<i64>,
    pub absolute_deadline: Option<i64>,
    pub persistent: bool,
    pub user_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub auth_epoch: Option<String>,
}

impl StoredRow {
    /// The record, or [`StoreError::Corrupt`] if a column holds nonsense.
    pub fn into_record(self) -> Result<Record, StoreError> {
        let time = |ms: i64| {
            from_unix_ms(ms)
                .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
        };
        let optional = |ms: Option<i64>| ms.map(time).transpose();
        let data: Data = serde_json::from_str(&self.data)
            .map_err(|e| StoreError::Corrupt(format!("session data is not a JSON object: {e}")))?;
        Ok(Record {
            data,
            created_at: time(self.created_at)?,
            last_active_at: time(self.last_active_at)?,
            idle_deadline: optional(self.idle_deadline)?,
            absolute_deadline: optional(self.absolute_deadline)?,
            persistent: self.persistent,
            user_id: self.user_id,
            client: ClientMeta {
                ip: self.ip,
                user_agent: self.user_agent,
            },
            auth_epoch: self.auth_epoch,
            version: u64::try_from(self.version)
                .map_err(|_| StoreError::Corrupt(format!("negative version {}", self.version)))?,
        })
    }
}

/// The app's clock in Unix milliseconds, the "now" SQLite compares deadlines against.
pub fn now_ms() -> i64 {
    cloakroom::record::to_unix_ms(OffsetDateTime::now_utc())
}

/// A version as the signed integer SQL columns hold.
pub fn version_param(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| StoreError::backend("session version overflow"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_validated() {
        assert!(validate_identifier("cloakroom_sessions").is_ok());
        assert!(validate_identifier("_t1").is_ok());
        for bad in [
            "",
            "1abc",
            "a-b",
            "a b",
            "x;drop table y",
            "t\"",
            &"a".repeat(64),
        ] {
            assert!(validate_identifier(bad).is_err(), "{bad}");
        }
    }
}
