//! What the two server databases (PostgreSQL, MySQL/MariaDB) share: connecting with the
//! default pool settings and choosing a table, optionally in a schema or database.

use sqlx::pool::PoolOptions;
use sqlx::{Connection, Database};

use crate::dialect::Dialect;
use crate::driver::Driver;
use crate::table::{TableName, DEFAULT_TABLE};
use crate::{SetupError, SqlStore};

/// A dialect spoken by a database server several app servers share. Sealed.
pub trait Server: Dialect {}

type Options<D> =
    <<<D as crate::dialect::sealed::Sealed>::Db as Database>::Connection as Connection>::Options;

impl<D: Server> SqlStore<D> {
    /// Connects with default pool settings ([`pool_options`](Self::pool_options)) and
    /// creates the schema if it is missing.
    pub async fn connect(url: &str) -> Result<Self, SetupError> {
        Self::connect_with_table(url, None, DEFAULT_TABLE).await
    }

    /// Like [`connect`](Self::connect), with another table, optionally in a schema
    /// (PostgreSQL) or database (MySQL): the names are validated before anything is
    /// connected, and only this table is created.
    pub async fn connect_with_table(
        url: &str,
        schema: Option<&str>,
        table: &str,
    ) -> Result<Self, SetupError> {
        let table = TableName::new(schema, table, D::quote)?;
        let options: Options<D> = url.parse().map_err(SetupError::Connect)?;
        let pool = Self::pool_options()
            .connect_with(options)
            .await
            .map_err(SetupError::Connect)?;
        Self::migrated(pool, table).await
    }

    /// The default pool settings: 16 connections, a 5 s acquire timeout, and a connection
    /// idle for longer than [`IDLE_CHECK_AFTER`](crate::IDLE_CHECK_AFTER) pinged before use
    /// (not every connection before every query: a ping is a round trip). Adjust and pass
    /// the pool to [`from_pool`](Self::from_pool).
    pub fn pool_options() -> PoolOptions<D::Db> {
        D::Db::default_pool()
    }

    /// Uses another table, optionally in a schema (PostgreSQL) or database (MySQL); each
    /// name is validated as a plain identifier and quoted in SQL, so reserved words such
    /// as `user` work.
    pub fn with_table(self, schema: Option<&str>, table: &str) -> Result<Self, SetupError> {
        self.in_table(schema, table)
    }
}
