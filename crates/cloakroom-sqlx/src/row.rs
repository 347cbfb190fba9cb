//! The sessions table's columns: a record as values to bind, and a row read back into a
//! record, with corrupt rows told apart from failures.

use cloakroom::record::{stored_unix_ms, to_unix_ms, Data};
use cloakroom::{ClientMeta, Record, SessionEntry, StoreError, StoreKey};

use crate::errors::store_error;

/// The columns a record is read from, in the order [`decode_record`] reads them by
/// position; the dialect may read `user_id` through an expression (see
/// `Dialect::USER_ID`).
pub fn record_columns(user_id: &str) -> String {
    format!("version, data, created_at, last_active_at, idle_deadline, absolute_deadline, persistent, {user_id}, ip, user_agent, auth_epoch, device_binding")
}

/// The columns a listing SELECT returns: the store key, then the record's.
pub fn selected(user_id: &str) -> String {
    format!("store_key, {}", record_columns(user_id))
}

/// The columns a record is stored in, as plain values ready to bind.
pub struct Columns {
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
    /// The device binding (DBSC) as JSON text.
    pub device_binding: Option<String>,
}

impl Columns {
    pub fn of(record: &Record) -> Result<Self, StoreError> {
        Ok(Self {
            version: version_param(record.version)?,
            data: serde_json::to_string(&record.data).map_err(StoreError::backend)?,
            created_at: to_unix_ms(record.created_at),
            last_active_at: to_unix_ms(record.last_active_at),
            idle_deadline: record.idle_deadline.map(to_unix_ms),
            absolute_deadline: record.absolute_deadline.map(to_unix_ms),
            persistent: record.persistent,
            user_id: record.user_id.clone(),
            ip: record.client.ip.clone(),
            user_agent: record.client.user_agent.clone(),
            auth_epoch: record.auth_epoch.clone(),
            device_binding: record
                .device_binding
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(StoreError::backend)?,
        })
    }
}

/// A version as the signed integer SQL columns hold.
pub fn version_param(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| StoreError::backend("session version overflow"))
}

/// A row as read back, before it is checked.
struct StoredRow {
    version: i64,
    data: String,
    created_at: i64,
    last_active_at: i64,
    idle_deadline: Option<i64>,
    absolute_deadline: Option<i64>,
    persistent: bool,
    user_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    auth_epoch: Option<String>,
    device_binding: Option<String>,
}

impl StoredRow {
    /// The record, or [`StoreError::Corrupt`] if a column holds nonsense.
    fn into_record(self) -> Result<Record, StoreError> {
        let data: Data = serde_json::from_str(&self.data)
            .map_err(|e| StoreError::Corrupt(format!("session data is not a JSON object: {e}")))?;
        Ok(Record {
            data,
            created_at: stored_unix_ms(self.created_at)?,
            last_active_at: stored_unix_ms(self.last_active_at)?,
            idle_deadline: self.idle_deadline.map(stored_unix_ms).transpose()?,
            absolute_deadline: self.absolute_deadline.map(stored_unix_ms).transpose()?,
            persistent: self.persistent,
            user_id: self.user_id,
            client: ClientMeta {
                ip: self.ip,
                user_agent: self.user_agent,
            },
            auth_epoch: self.auth_epoch,
            device_binding: self
                .device_binding
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("device binding is not JSON: {e}")))?,
            version: u64::try_from(self.version)
                .map_err(|_| StoreError::Corrupt(format!("negative version {}", self.version)))?,
        })
    }
}

/// A row as decoded: an entry, or a corrupt row's handle (if its key is readable) and
/// what is wrong with it.
pub type Decoded = Result<SessionEntry, (Option<StoreKey>, StoreError)>;

/// Reads a session entry from a row of [`selected`] columns: [`StoreError::Corrupt`] if a
/// column holds what no record can, with the row's key (if readable) for the log.
pub fn decode<'r, R>(row: &'r R) -> Decoded
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let key: Option<Vec<u8>> = row.try_get(0).ok();
    let key = key.as_deref().and_then(StoreKey::from_slice);
    match (key, decode_record(row, 1)) {
        (Some(key), Ok(record)) => Ok(SessionEntry { key, record }),
        (None, Ok(_)) => Err((
            None,
            StoreError::Corrupt("store key is not 32 bytes".into()),
        )),
        (key, Err(error)) => Err((key, error)),
    }
}

/// Reads a record from the [`record_columns`] of a row, starting at column `first`.
/// By position, not by name: a name is a hash lookup per column on every load, and the
/// order is fixed by [`record_columns`], which every SELECT is built from.
pub fn decode_record<'r, R>(row: &'r R, first: usize) -> Result<Record, StoreError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let stored = StoredRow {
        version: row.try_get(first).map_err(store_error)?,
        data: row.try_get(first + 1).map_err(store_error)?,
        created_at: row.try_get(first + 2).map_err(store_error)?,
        last_active_at: row.try_get(first + 3).map_err(store_error)?,
        idle_deadline: row.try_get(first + 4).map_err(store_error)?,
        absolute_deadline: row.try_get(first + 5).map_err(store_error)?,
        persistent: row.try_get(first + 6).map_err(store_error)?,
        user_id: row.try_get(first + 7).map_err(store_error)?,
        ip: row.try_get(first + 8).map_err(store_error)?,
        user_agent: row.try_get(first + 9).map_err(store_error)?,
        auth_epoch: row.try_get(first + 10).map_err(store_error)?,
        device_binding: row.try_get(first + 11).map_err(store_error)?,
    };
    stored.into_record()
}

/// The readable entries; a corrupt row is logged (by handle, never raw) and skipped, so
/// one bad row never fails a request or a listing. Other failures are returned.
pub fn readable(rows: Vec<Decoded>) -> Result<Vec<SessionEntry>, StoreError> {
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        match row {
            Ok(entry) => entries.push(entry),
            Err((key, StoreError::Corrupt(reason))) => {
                let handle = key.map(|key| key.handle().to_string());
                tracing::warn!(?handle, %reason, "corrupt session record treated as absent");
            }
            Err((_, error)) => return Err(error),
        }
    }
    Ok(entries)
}
