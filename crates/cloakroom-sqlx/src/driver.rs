//! Running a statement on any of the three sqlx databases: the values a statement binds,
//! and one generic way to execute it and read its rows, written once for all drivers.

use std::future::Future;
use std::time::Duration;

use sqlx::pool::{Pool, PoolConnectionMetadata, PoolOptions};

use crate::errors::DEFAULT_OPERATION_TIMEOUT;
use cloakroom::{Record, StoreError};

use crate::row::{decode, decode_record, Decoded};

/// A pooled connection idle for at least this long is pinged before it is handed out by
/// the stores' default pools (see `PostgresStore::pool_options`).
pub const IDLE_CHECK_AFTER: Duration = Duration::from_secs(5);

/// One value bound to a placeholder; `None` binds SQL NULL of that type.
#[derive(Clone, Copy, Debug)]
pub enum Bound<'a> {
    Bytes(Option<&'a [u8]>),
    Int(Option<i64>),
    Text(Option<&'a str>),
    Bool(bool),
}

/// How many rows a statement changed; sqlx has no trait for it.
pub trait RowsAffected {
    fn rows(&self) -> u64;
}

#[cfg(feature = "sqlite")]
impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

#[cfg(feature = "postgres")]
impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

#[cfg(feature = "mysql")]
impl RowsAffected for sqlx::mysql::MySqlQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

/// A database the stores run on: binds [`Bound`] values, executes, and decodes rows.
pub trait Driver: sqlx::Database {
    /// Runs a statement; the number of rows it changed.
    fn execute<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        args: &'a [Bound<'a>],
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'a;

    /// Runs a query; whether it returned a row.
    fn exists<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        args: &'a [Bound<'a>],
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send + 'a;

    /// Runs a query selecting session rows; each decoded, or why not.
    fn fetch<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        args: &'a [Bound<'a>],
    ) -> impl Future<Output = Result<Vec<Decoded>, sqlx::Error>> + Send + 'a;

    /// Runs a query selecting at most one row of record columns alone (no key): the
    /// record, why it is unreadable, or none. The request path's load: no key column,
    /// and no vectors of rows or entries for the one row it reads.
    fn fetch_record<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        args: &'a [Bound<'a>],
    ) -> impl Future<Output = Result<Option<Result<Record, StoreError>>, sqlx::Error>> + Send + 'a;

    /// The stores' default pool settings: 16 connections, a 5 s acquire timeout, and a
    /// connection idle for longer than [`IDLE_CHECK_AFTER`] pinged before use.
    fn default_pool() -> PoolOptions<Self> {
        PoolOptions::new()
            .max_connections(16)
            .acquire_timeout(DEFAULT_OPERATION_TIMEOUT)
            .test_before_acquire(false)
            .before_acquire(|connection, metadata| Box::pin(ping_if_idle(connection, metadata)))
    }
}

/// Pings a connection only when it has been idle for [`IDLE_CHECK_AFTER`] (a ping is a
/// round trip; a connection in steady use is alive, and one that died under load fails
/// its query once and is replaced).
async fn ping_if_idle<C: sqlx::Connection>(
    connection: &mut C,
    metadata: PoolConnectionMetadata,
) -> Result<bool, sqlx::Error> {
    if metadata.idle_for >= IDLE_CHECK_AFTER {
        connection.ping().await?;
    }
    Ok(true)
}

fn bind_all<'a, DB>(
    sql: &'a str,
    args: &'a [Bound<'a>],
) -> sqlx::query::Query<'a, DB, DB::Arguments<'a>>
where
    DB: sqlx::Database,
    Option<&'a [u8]>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    args.iter()
        .fold(sqlx::query::<DB>(sql), |query, arg| match *arg {
            Bound::Bytes(value) => query.bind(value),
            Bound::Int(value) => query.bind(value),
            Bound::Text(value) => query.bind(value),
            Bound::Bool(value) => query.bind(value),
        })
}

impl<DB> Driver for DB
where
    DB: sqlx::Database,
    DB::QueryResult: RowsAffected,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> Option<&'q [u8]>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    for<'r> Vec<u8>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> String: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> bool: sqlx::Decode<'r, DB>,
{
    async fn execute<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        args: &'a [Bound<'a>],
    ) -> Result<u64, sqlx::Error> {
        let done = bind_all::<DB>(sql, args).execute(pool).await?;
        Ok(done.rows())
    }

    async fn exists<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        args: &'a [Bound<'a>],
    ) -> Result<bool, sqlx::Error> {
        let row = bind_all::<DB>(sql, args).fetch_optional(pool).await?;
        Ok(row.is_some())
    }

    async fn fetch<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        args: &'a [Bound<'a>],
    ) -> Result<Vec<Decoded>, sqlx::Error> {
        let rows = bind_all::<DB>(sql, args).fetch_all(pool).await?;
        Ok(rows.iter().map(decode).collect())
    }

    async fn fetch_record<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        args: &'a [Bound<'a>],
    ) -> Result<Option<Result<Record, StoreError>>, sqlx::Error> {
        let row = bind_all::<DB>(sql, args).fetch_optional(pool).await?;
        Ok(row.as_ref().map(|row| decode_record(row, 0)))
    }
}

/// Runs schema statements in order.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) async fn run_schema<DB: Driver>(
    pool: &Pool<DB>,
    statements: &[String],
) -> Result<(), crate::SetupError> {
    for statement in statements {
        DB::execute(pool, statement, &[])
            .await
            .map_err(crate::SetupError::Migrate)?;
    }
    Ok(())
}
