//! Setup errors, the mapping of driver errors to store errors, and the time bound every
//! operation runs under.

use std::future::Future;
use std::time::Duration;

use cloakroom::StoreError;

/// The default bound on every store operation.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

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
        sqlx::Error::Database(ref db) if is_passing(&**db) => StoreError::unavailable(error),
        other => StoreError::backend(other),
    }
}

/// Whether the database refused for a passing state, which a retry gets past: a lost or
/// refused connection, a server shutting down or starting, too many connections, a
/// statement cancelled or timed out, a lock not had in time, or a read-only server (a
/// replica, or a primary demoted in a failover); for SQLite, a file another connection
/// holds locked.
fn is_passing(db: &dyn sqlx::error::DatabaseError) -> bool {
    #[cfg(feature = "sqlite")]
    if let Some(code) = sqlite_result_code(db) {
        return matches!(code, SQLITE_BUSY | SQLITE_LOCKED);
    }
    #[cfg(feature = "mysql")]
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        // Lock wait timeout; read-only server (`--read-only`, `super_read_only`).
        if matches!(mysql.number(), 1205 | 1290 | 1836) {
            return true;
        }
    }
    // SQLSTATEs (PostgreSQL, MySQL): connection exceptions, insufficient resources,
    // operator intervention (shutdown, cancel, statement timeout), a read-only
    // transaction, a lock not available.
    db.code().is_some_and(|code| {
        code.starts_with("08")
            || code.starts_with("53")
            || code.starts_with("57")
            || matches!(&*code, "25006" | "55P03")
    })
}

/// `SQLITE_BUSY`: another connection holds the file locked.
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE_BUSY: i32 = 5;
/// `SQLITE_LOCKED`: a table is locked within this connection's database.
#[cfg(feature = "sqlite")]
const SQLITE_LOCKED: i32 = 6;

/// The primary result code of a SQLite error (extended codes folded into it); `None` for
/// another database's. SQLite's codes are result codes, not SQLSTATEs.
#[cfg(feature = "sqlite")]
pub(crate) fn sqlite_result_code(db: &dyn sqlx::error::DatabaseError) -> Option<i32> {
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    let code = db.code()?.parse::<i32>().ok()?;
    Some(code & 0xff)
}

/// Whether the database chose this statement as a deadlock's (or a serialization
/// conflict's) victim and rolled it back: SQLSTATE `40001` (MySQL's 1213 and PostgreSQL's
/// serialization failure) or `40P01` (PostgreSQL's deadlock). Every store operation is one
/// statement in its own transaction, so it was undone whole and can run again.
pub fn is_deadlock_victim(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01")))
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
