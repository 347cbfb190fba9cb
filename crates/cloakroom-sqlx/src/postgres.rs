//! The PostgreSQL store: durable sessions shared by several app servers.
//!
//! Round trips per operation (each is one statement):
//!
//! | operation | round trips |
//! |---|---|
//! | `load` | 1 |
//! | `insert` (replacing only an expired row) | 1 |
//! | `update` (compare-and-set) | 1; a failed one pays a second to tell `Conflict` from `Missing` |
//! | `touch`, `rename`, `delete` | 1 |
//! | `list_for_user`, `delete_for_user`, `find_by_handle`, `list_sessions` | 1 |
//! | `purge_expired` | 1 per batch (`FOR UPDATE SKIP LOCKED`, so it never blocks requests for long) |
//!
//! ## Clocks
//!
//! Several app servers may disagree about the time, so liveness is judged by the
//! **database's** clock (`now()`), the one clock they all share. Deadlines the app sends
//! are clamped so that, measured on the database clock, they lie no further ahead than the
//! app meant (`LEAST(deadline, db_now + (deadline - app_now))`), and the absolute
//! deadline is fixed at insert. An app whose clock runs fast therefore cannot keep a
//! session alive past its absolute deadline; one whose clock runs slow only shortens it.

use std::time::Duration;

use async_trait::async_trait;
use cloakroom::record::to_unix_ms;
use cloakroom::{
    InsertError, ListQuery, Record, RenameError, SessionEntry, SessionHandle, SessionStore,
    StoreError, StoreKey, Touch, TouchError, UpdateError,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::common::{
    bounded, entries_skipping_corrupt, failed_update, purge_in_batches, quote_postgres,
    record_or_absent, rename_outcome, store_error, version_param, Columns, SetupError, TableName,
    DEFAULT_OPERATION_TIMEOUT, DEFAULT_TABLE, SELECTED,
};

/// The database clock in Unix milliseconds.
const NOW: &str = "(FLOOR(EXTRACT(EPOCH FROM now()) * 1000)::BIGINT)";

/// A session store in a PostgreSQL table.
///
/// ```no_run
/// # async fn demo() -> Result<(), cloakroom_sqlx::SetupError> {
/// use cloakroom_sqlx::PostgresStore;
/// let store = PostgresStore::connect("postgres://localhost/app").await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    table: TableName,
    timeout: Duration,
}

impl PostgresStore {
    /// Connects with default pool settings ([`pool_options`](Self::pool_options)) and
    /// creates the schema if it is missing.
    pub async fn connect(url: &str) -> Result<Self, SetupError> {
        Self::connect_with_table(url, None, DEFAULT_TABLE).await
    }

    /// Like [`connect`](Self::connect), with another table, optionally in a schema: the
    /// names are validated before anything is connected, and only this table is created.
    pub async fn connect_with_table(
        url: &str,
        schema: Option<&str>,
        table: &str,
    ) -> Result<Self, SetupError> {
        let table = TableName::new(schema, table, quote_postgres)?;
        let options: PgConnectOptions = url.parse().map_err(SetupError::Connect)?;
        let pool = Self::pool_options()
            .connect_with(options)
            .await
            .map_err(SetupError::Connect)?;
        let store = Self {
            table,
            ..Self::from_pool(pool)
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The default pool settings: 16 connections, a 5 s acquire timeout, and a connection
    /// idle for longer than [`IDLE_CHECK_AFTER`](crate::IDLE_CHECK_AFTER) pinged before use
    /// (not every connection before every query: a ping is a round trip). Adjust and pass
    /// the pool to [`from_pool`](Self::from_pool).
    pub fn pool_options() -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(DEFAULT_OPERATION_TIMEOUT)
            .test_before_acquire(false)
            .before_acquire(crate::common::ping_if_idle)
    }

    /// A store over an existing pool. Call [`migrate`](Self::migrate) if the schema may be
    /// missing.
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            table: TableName::new(None, DEFAULT_TABLE, quote_postgres)
                .expect("the default table name is valid"),
            timeout: DEFAULT_OPERATION_TIMEOUT,
        }
    }

    /// Uses another table, optionally in a schema (`schema` and `table` are each validated
    /// as plain identifiers, and quoted in SQL, so reserved words such as `user` work).
    pub fn with_table(mut self, schema: Option<&str>, table: &str) -> Result<Self, SetupError> {
        self.table = TableName::new(schema, table, quote_postgres)?;
        Ok(self)
    }

    /// Bounds every operation (default 5 s); past it the operation fails with
    /// [`StoreError::Timeout`].
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The table as SQL names it: quoted, and schema-qualified if a schema was given.
    pub fn table(&self) -> &str {
        &self.table.sql
    }

    /// Creates the table and its indexes if missing. Idempotent, and safe when several
    /// app servers start at once (an advisory lock serialises them).
    pub async fn migrate(&self) -> Result<(), SetupError> {
        let t = &self.table.sql;
        let index = |what: &str| quote_postgres(&format!("{}_{what}", self.table.index_prefix));
        let (by_expiry, by_user) = (index("expires_at"), index("user_id"));
        let mut tx = self.pool.begin().await.map_err(SetupError::Migrate)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("cloakroom:{}", self.table.plain))
            .execute(&mut *tx)
            .await
            .map_err(SetupError::Migrate)?;
        let statements = [
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (
                    store_key BYTEA PRIMARY KEY,
                    version BIGINT NOT NULL,
                    data TEXT NOT NULL,
                    created_at BIGINT NOT NULL,
                    last_active_at BIGINT NOT NULL,
                    idle_deadline BIGINT,
                    absolute_deadline BIGINT,
                    expires_at BIGINT,
                    persistent BOOLEAN NOT NULL,
                    user_id TEXT,
                    ip TEXT,
                    user_agent TEXT,
                    auth_epoch TEXT
                )"
            ),
            // Tables created before revocation by epoch lack its column.
            format!("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS auth_epoch TEXT"),
            format!("CREATE INDEX IF NOT EXISTS {by_expiry} ON {t} (expires_at) WHERE expires_at IS NOT NULL"),
            format!("CREATE INDEX IF NOT EXISTS {by_user} ON {t} (user_id) WHERE user_id IS NOT NULL"),
        ];
        for statement in statements {
            sqlx::query(&statement)
                .execute(&mut *tx)
                .await
                .map_err(SetupError::Migrate)?;
        }
        tx.commit().await.map_err(SetupError::Migrate)
    }

    fn live() -> String {
        format!("(expires_at IS NULL OR expires_at > {NOW})")
    }

    /// `LEAST(deadline, db_now + (deadline - app_now))`: see the module docs on clocks.
    fn clamped(deadline: &str, app_now: &str) -> String {
        format!("LEAST({deadline}, {NOW} + ({deadline} - {app_now}))")
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        bounded(self.timeout, async {
            let sql = format!(
                "SELECT {SELECTED} FROM {} WHERE store_key = $1 AND {}",
                self.table.sql,
                Self::live()
            );
            let row = sqlx::query(&sql)
                .bind(key.as_bytes().as_slice())
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error)?;
            record_or_absent(key, row.as_ref())
        })
        .await
    }

    async fn insert(&self, key: &StoreKey, record: &Record) -> Result<(), InsertError> {
        bounded(self.timeout, async {
            let c = Columns::of(record)?;
            let idle = Self::clamped("$6::BIGINT", "$5");
            let absolute = Self::clamped("$7::BIGINT", "$4");
            let sql = format!(
                "INSERT INTO {t} AS t ({SELECTED}, expires_at)
                 VALUES ($1, $2, $3, $4, $5, {idle}, {absolute}, $8, $9, $10, $11, $12, LEAST({idle}, {absolute}))
                 ON CONFLICT (store_key) DO UPDATE SET version = EXCLUDED.version, data = EXCLUDED.data,
                   created_at = EXCLUDED.created_at, last_active_at = EXCLUDED.last_active_at,
                   idle_deadline = EXCLUDED.idle_deadline, absolute_deadline = EXCLUDED.absolute_deadline,
                   persistent = EXCLUDED.persistent, user_id = EXCLUDED.user_id, ip = EXCLUDED.ip,
                   user_agent = EXCLUDED.user_agent, auth_epoch = EXCLUDED.auth_epoch,
                   expires_at = EXCLUDED.expires_at
                 WHERE t.expires_at IS NOT NULL AND t.expires_at <= {NOW}",
                t = self.table.sql
            );
            let done = sqlx::query(&sql)
                .bind(key.as_bytes().as_slice())
                .bind(version_param(record.version)?)
                .bind(c.data)
                .bind(c.created_at)
                .bind(c.last_active_at)
                .bind(c.idle_deadline)
                .bind(c.absolute_deadline)
                .bind(c.persistent)
                .bind(c.user_id)
                .bind(c.ip)
                .bind(c.user_agent)
                .bind(c.auth_epoch)
                .execute(&self.pool)
                .await
                .map_err(store_error)?;
            if done.rows_affected() == 1 {
                Ok(())
            } else {
                Err(InsertError::Duplicate)
            }
        })
        .await
    }

    async fn update(
        &self,
        key: &StoreKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<(), UpdateError> {
        bounded(self.timeout, async {
            let c = Columns::of(record)?;
            let idle = Self::clamped("$5::BIGINT", "$4");
            let live = Self::live();
            // A plain UPDATE: telling Conflict from Missing in the same statement (a CTE
            // reading the row again) cost every successful write some 12% more database
            // time, so only a failed compare-and-set pays a second query for it.
            let sql = format!(
                "UPDATE {t} SET version = $2 + 1, data = $3, last_active_at = $4, idle_deadline = {idle},
                   expires_at = LEAST({idle}, absolute_deadline),
                   persistent = $6, user_id = $7, ip = $8, user_agent = $9, auth_epoch = $10
                 WHERE store_key = $1 AND version = $2 AND {live}",
                t = self.table.sql
            );
            let done = sqlx::query(&sql)
                .bind(key.as_bytes().as_slice())
                .bind(version_param(expected_version)?)
                .bind(c.data)
                .bind(c.last_active_at)
                .bind(c.idle_deadline)
                .bind(c.persistent)
                .bind(c.user_id)
                .bind(c.ip)
                .bind(c.user_agent)
                .bind(c.auth_epoch)
                .execute(&self.pool)
                .await
                .map_err(store_error)?;
            if done.rows_affected() == 1 {
                return Ok(());
            }
            let sql = format!("SELECT 1 FROM {} WHERE store_key = $1 AND {live}", self.table.sql);
            let live_row = sqlx::query(&sql)
                .bind(key.as_bytes().as_slice())
                .fetch_optional(&self.pool)
                .await;
            Err(failed_update(live_row))
        })
        .await
    }

    async fn touch(&self, key: &StoreKey, touch: &Touch) -> Result<(), TouchError> {
        bounded(self.timeout, async {
            let idle = Self::clamped("$3::BIGINT", "$2");
            let sql = format!(
                "UPDATE {} SET last_active_at = $2, idle_deadline = {idle}, expires_at = LEAST({idle}, absolute_deadline)
                 WHERE store_key = $1 AND {}",
                self.table.sql,
                Self::live()
            );
            let done = sqlx::query(&sql)
                .bind(key.as_bytes().as_slice())
                .bind(to_unix_ms(touch.last_active_at))
                .bind(touch.idle_deadline.map(to_unix_ms))
                .execute(&self.pool)
                .await
                .map_err(store_error)?;
            if done.rows_affected() == 1 {
                Ok(())
            } else {
                Err(TouchError::Missing)
            }
        })
        .await
    }

    async fn rename(&self, old: &StoreKey, new: &StoreKey) -> Result<(), RenameError> {
        bounded(self.timeout, async {
            let sql = format!(
                "UPDATE {} SET store_key = $2 WHERE store_key = $1 AND {}",
                self.table.sql,
                Self::live()
            );
            let done = sqlx::query(&sql)
                .bind(old.as_bytes().as_slice())
                .bind(new.as_bytes().as_slice())
                .execute(&self.pool)
                .await;
            rename_outcome(done.map(|done| done.rows_affected()))
        })
        .await
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        bounded(self.timeout, async {
            let sql = format!("DELETE FROM {} WHERE store_key = $1", self.table.sql);
            let done = sqlx::query(&sql)
                .bind(key.as_bytes().as_slice())
                .execute(&self.pool)
                .await
                .map_err(store_error)?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn list_for_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError> {
        bounded(self.timeout, async {
            let sql = format!(
                "SELECT {SELECTED} FROM {} WHERE user_id = $1 AND {}",
                self.table.sql,
                Self::live()
            );
            let rows = sqlx::query(&sql)
                .bind(user)
                .fetch_all(&self.pool)
                .await
                .map_err(store_error)?;
            entries_skipping_corrupt(&rows)
        })
        .await
    }

    async fn delete_for_user(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        bounded(self.timeout, async {
            let sql = format!(
                "DELETE FROM {} WHERE user_id = $1 AND {} AND ($2::BYTEA IS NULL OR store_key <> $2)",
                self.table.sql,
                Self::live()
            );
            let done = sqlx::query(&sql)
                .bind(user)
                .bind(except.map(|k| k.as_bytes().to_vec()))
                .execute(&self.pool)
                .await
                .map_err(store_error)?;
            Ok(done.rows_affected())
        })
        .await
    }

    async fn purge_expired(&self, batch: usize) -> Result<u64, StoreError> {
        self.purge_expired_with_progress(batch, &mut |_| {}).await
    }

    async fn purge_expired_with_progress(
        &self,
        batch: usize,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM {t} WHERE store_key IN (
               SELECT store_key FROM {t} WHERE expires_at <= {NOW} LIMIT $1 FOR UPDATE SKIP LOCKED)",
            t = self.table.sql
        );
        let sql = sql.as_str();
        purge_in_batches(batch, progress, |limit| {
            bounded(self.timeout, async move {
                let done = sqlx::query(sql)
                    .bind(limit)
                    .execute(&self.pool)
                    .await
                    .map_err(store_error)?;
                Ok(done.rows_affected())
            })
        })
        .await
    }

    async fn find_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionEntry>, StoreError> {
        bounded(self.timeout, async {
            let (low, high) = handle.key_range();
            let sql = format!(
                "SELECT {SELECTED} FROM {} WHERE store_key BETWEEN $1 AND $2 AND {} LIMIT 1",
                self.table.sql,
                Self::live()
            );
            let rows = sqlx::query(&sql)
                .bind(low.as_bytes().as_slice())
                .bind(high.as_bytes().as_slice())
                .fetch_all(&self.pool)
                .await
                .map_err(store_error)?;
            Ok(entries_skipping_corrupt(&rows)?.into_iter().next())
        })
        .await
    }

    async fn list_sessions(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        bounded(self.timeout, async {
            let sql = format!(
                "SELECT {SELECTED} FROM {} WHERE {} AND ($1::TEXT IS NULL OR user_id = $1)
                 AND ($2::BYTEA IS NULL OR store_key > $2) ORDER BY store_key LIMIT $3",
                self.table.sql,
                Self::live()
            );
            let rows = sqlx::query(&sql)
                .bind(query.user.as_deref())
                .bind(query.after.map(|k| k.as_bytes().to_vec()))
                .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await
                .map_err(store_error)?;
            entries_skipping_corrupt(&rows)
        })
        .await
    }
}
