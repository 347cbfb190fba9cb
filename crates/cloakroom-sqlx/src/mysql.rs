//! The MySQL / MariaDB store: durable sessions shared by several app servers.
//!
//! Round trips per operation:
//!
//! | operation | round trips |
//! |---|---|
//! | `load` | 1 |
//! | `insert` | 1 (2–3 only when the key is taken: to replace an expired row or report `Duplicate`) |
//! | `update` (compare-and-set) | 1 on success; a failed one pays a second query to tell `Conflict` from `Missing` |
//! | `touch`, `rename`, `delete` | 1 |
//! | `list_for_user`, `delete_for_user`, `find_by_handle`, `list_sessions` | 1 |
//! | `purge_expired` | 1 per batch (`DELETE … ORDER BY expires_at LIMIT n`) |
//!
//! MySQL has no `INSERT … RETURNING` nor a data-modifying CTE, hence the extra query on
//! the failure paths; the success paths are one statement each.
//!
//! ## Clocks
//!
//! As for PostgreSQL: liveness is judged by the **database's** clock (`NOW(3)`), deadlines
//! from the app are clamped so that they lie no further ahead on the database clock than
//! the app meant, and the absolute deadline is fixed at insert. A fast app clock cannot
//! keep a session alive past its absolute deadline.

use std::time::Duration;

use async_trait::async_trait;
use cloakroom::record::to_unix_ms;
use cloakroom::{
    InsertError, ListQuery, Record, RenameError, SessionEntry, SessionHandle, SessionStore,
    StoreError, StoreKey, Touch, TouchError, UpdateError,
};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};

use crate::common::{
    bounded, entries_skipping_corrupt, failed_update, is_unique_violation, purge_in_batches,
    quote_backtick, record_or_absent, rename_outcome, store_error, version_param, Columns,
    SetupError, TableName, DEFAULT_OPERATION_TIMEOUT, DEFAULT_TABLE, SELECTED,
};

/// The type of the `user_id` column: bytes, compared exactly. A `utf8mb4_bin` text column
/// is PAD SPACE (`'alice ' = 'alice'`), so one user's revoke would reach another's
/// sessions; MariaDB and MySQL share no NO PAD text collation, but both compare binary
/// strings byte for byte. 1020 bytes hold the 255 characters the text column allowed.
const USER_ID_TYPE: &str = "VARBINARY(1020)";

/// The selected columns. `user_id` is bytes, so it is read back through a text
/// conversion.
static SELECTED_TEXT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    SELECTED.replace("user_id", "CONVERT(user_id USING utf8mb4) AS user_id")
});

/// The database clock in Unix milliseconds.
const NOW: &str = "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)";

/// A session store in a MySQL or MariaDB table (InnoDB).
///
/// ```no_run
/// # async fn demo() -> Result<(), cloakroom_sqlx::SetupError> {
/// use cloakroom_sqlx::MySqlStore;
/// let store = MySqlStore::connect("mysql://root@localhost/app").await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct MySqlStore {
    pool: MySqlPool,
    table: TableName,
    timeout: Duration,
}

impl MySqlStore {
    /// Connects with default pool settings ([`pool_options`](Self::pool_options)) and
    /// creates the schema if it is missing.
    pub async fn connect(url: &str) -> Result<Self, SetupError> {
        Self::connect_with_table(url, None, DEFAULT_TABLE).await
    }

    /// Like [`connect`](Self::connect), with another table, optionally in another
    /// database: the names are validated before anything is connected, and only this
    /// table is created.
    pub async fn connect_with_table(
        url: &str,
        database: Option<&str>,
        table: &str,
    ) -> Result<Self, SetupError> {
        let table = TableName::new(database, table, quote_backtick)?;
        let options: MySqlConnectOptions = url.parse().map_err(SetupError::Connect)?;
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
    pub fn pool_options() -> MySqlPoolOptions {
        MySqlPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(DEFAULT_OPERATION_TIMEOUT)
            .test_before_acquire(false)
            .before_acquire(crate::common::ping_if_idle)
    }

    /// A store over an existing pool. Call [`migrate`](Self::migrate) if the schema may be
    /// missing.
    pub fn from_pool(pool: MySqlPool) -> Self {
        Self {
            pool,
            table: TableName::new(None, DEFAULT_TABLE, quote_backtick)
                .expect("the default table name is valid"),
            timeout: DEFAULT_OPERATION_TIMEOUT,
        }
    }

    /// Uses another table, optionally in another database (each validated as a plain
    /// identifier, and quoted in SQL, so reserved words such as `order` work).
    pub fn with_table(mut self, database: Option<&str>, table: &str) -> Result<Self, SetupError> {
        self.table = TableName::new(database, table, quote_backtick)?;
        Ok(self)
    }

    /// Bounds every operation (default 5 s); past it the operation fails with
    /// [`StoreError::Timeout`].
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The connection pool.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// The table as SQL names it: quoted, and database-qualified if a database was given.
    pub fn table(&self) -> &str {
        &self.table.sql
    }

    /// Creates the table and its indexes if missing, and brings a table an older version
    /// made up to date (the `auth_epoch` column; `user_id` as exact bytes). Idempotent.
    pub async fn migrate(&self) -> Result<(), SetupError> {
        let t = &self.table.sql;
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                store_key BINARY(32) NOT NULL PRIMARY KEY,
                version BIGINT NOT NULL,
                data LONGTEXT NOT NULL,
                created_at BIGINT NOT NULL,
                last_active_at BIGINT NOT NULL,
                idle_deadline BIGINT NULL,
                absolute_deadline BIGINT NULL,
                expires_at BIGINT NULL,
                persistent BOOLEAN NOT NULL,
                user_id {USER_ID_TYPE} NULL,
                ip VARCHAR(64) NULL,
                user_agent VARCHAR(1024) NULL,
                auth_epoch VARCHAR(255) NULL,
                INDEX by_expiry (expires_at),
                INDEX by_user (user_id)
            ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"
        );
        sqlx::query(&sql)
            .execute(&self.pool)
            .await
            .map_err(SetupError::Migrate)?;
        // MySQL has no ADD COLUMN IF NOT EXISTS: look at what the table has.
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT CAST(column_name AS CHAR), CAST(data_type AS CHAR) FROM information_schema.columns
             WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?",
        )
        .bind(self.table.schema.as_deref())
        .bind(&self.table.unqualified)
        .fetch_all(&self.pool)
        .await
        .map_err(SetupError::Migrate)?;
        let type_of = |name: &str| {
            columns
                .iter()
                .find(|(column, _)| column.eq_ignore_ascii_case(name))
                .map(|(_, kind)| kind.to_ascii_lowercase())
        };
        let mut changes = Vec::new();
        // Tables created before revocation by epoch lack its column.
        if type_of("auth_epoch").is_none() {
            changes.push("ADD COLUMN auth_epoch VARCHAR(255) NULL".to_owned());
        }
        // Tables created before user ids compared exactly hold them as PAD SPACE text.
        if type_of("user_id").is_some_and(|kind| kind != "varbinary") {
            changes.push(format!("MODIFY user_id {USER_ID_TYPE} NULL"));
        }
        if !changes.is_empty() {
            sqlx::query(&format!("ALTER TABLE {t} {}", changes.join(", ")))
                .execute(&self.pool)
                .await
                .map_err(SetupError::Migrate)?;
        }
        Ok(())
    }

    fn live() -> String {
        format!("(expires_at IS NULL OR expires_at > {NOW})")
    }

    /// `LEAST(deadline, db_now + (deadline - app_now))`, NULL when there is no deadline.
    fn clamped(deadline: &str, app_now: &str) -> String {
        format!("LEAST({deadline}, {NOW} + ({deadline} - {app_now}))")
    }

    /// The earlier of two nullable deadlines, NULL meaning "never" (MySQL's `LEAST`
    /// returns NULL if either is NULL).
    fn earliest(a: &str, b: &str) -> String {
        format!(
            "(CASE WHEN {a} IS NULL THEN {b} WHEN {b} IS NULL THEN {a} ELSE LEAST({a}, {b}) END)"
        )
    }

    async fn try_insert(&self, key: &StoreKey, record: &Record) -> Result<bool, StoreError> {
        let c = Columns::of(record)?;
        let sql = format!(
            "INSERT INTO {} ({SELECTED}, expires_at)
             SELECT ?, ?, ?, ?, ?, idle, absolute, ?, ?, ?, ?, ?, {}
             FROM (SELECT {} AS idle, {} AS absolute) AS deadlines",
            self.table.sql,
            Self::earliest("idle", "absolute"),
            Self::clamped("?", "?"),
            Self::clamped("?", "?"),
        );
        let done = sqlx::query(&sql)
            .bind(key.as_bytes().as_slice())
            .bind(version_param(record.version)?)
            .bind(&c.data)
            .bind(c.created_at)
            .bind(c.last_active_at)
            .bind(c.persistent)
            .bind(&c.user_id)
            .bind(&c.ip)
            .bind(&c.user_agent)
            .bind(&c.auth_epoch)
            .bind(c.idle_deadline)
            .bind(c.idle_deadline)
            .bind(c.last_active_at)
            .bind(c.absolute_deadline)
            .bind(c.absolute_deadline)
            .bind(c.created_at)
            .execute(&self.pool)
            .await;
        match done {
            Ok(_) => Ok(true),
            Err(error) if is_unique_violation(&error) => Ok(false),
            Err(error) => Err(store_error(error)),
        }
    }
}

#[async_trait]
impl SessionStore for MySqlStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        bounded(self.timeout, async {
            let sql = format!(
                "SELECT {} FROM {} WHERE store_key = ? AND {}",
                *SELECTED_TEXT,
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
            if self.try_insert(key, record).await? {
                return Ok(());
            }
            // The key is taken; an expired row may be replaced, a live one never.
            let sql = format!(
                "DELETE FROM {} WHERE store_key = ? AND NOT {}",
                self.table.sql,
                Self::live()
            );
            let cleared = sqlx::query(&sql)
                .bind(key.as_bytes().as_slice())
                .execute(&self.pool)
                .await
                .map_err(store_error)?;
            if cleared.rows_affected() == 1 && self.try_insert(key, record).await? {
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
            let expected = version_param(expected_version)?;
            // Assignments run left to right: idle_deadline is set before expires_at reads it.
            let sql = format!(
                "UPDATE {} SET version = version + 1, data = ?, last_active_at = ?, idle_deadline = {},
                   expires_at = {}, persistent = ?, user_id = ?, ip = ?, user_agent = ?, auth_epoch = ?
                 WHERE store_key = ? AND version = ? AND {}",
                self.table.sql,
                Self::clamped("?", "?"),
                Self::earliest("idle_deadline", "absolute_deadline"),
                Self::live()
            );
            let done = sqlx::query(&sql)
                .bind(&c.data)
                .bind(c.last_active_at)
                .bind(c.idle_deadline)
                .bind(c.idle_deadline)
                .bind(c.last_active_at)
                .bind(c.persistent)
                .bind(&c.user_id)
                .bind(&c.ip)
                .bind(&c.user_agent)
                .bind(&c.auth_epoch)
                .bind(key.as_bytes().as_slice())
                .bind(expected)
                .execute(&self.pool)
                .await
                .map_err(store_error)?;
            if done.rows_affected() == 1 {
                return Ok(());
            }
            let sql = format!("SELECT 1 FROM {} WHERE store_key = ? AND {}", self.table.sql, Self::live());
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
            let sql = format!(
                "UPDATE {} SET last_active_at = ?, idle_deadline = {}, expires_at = {}
                 WHERE store_key = ? AND {}",
                self.table.sql,
                Self::clamped("?", "?"),
                Self::earliest("idle_deadline", "absolute_deadline"),
                Self::live()
            );
            let last_active = to_unix_ms(touch.last_active_at);
            let idle = touch.idle_deadline.map(to_unix_ms);
            let done = sqlx::query(&sql)
                .bind(last_active)
                .bind(idle)
                .bind(idle)
                .bind(last_active)
                .bind(key.as_bytes().as_slice())
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
                "UPDATE {} SET store_key = ? WHERE store_key = ? AND {}",
                self.table.sql,
                Self::live()
            );
            let done = sqlx::query(&sql)
                .bind(new.as_bytes().as_slice())
                .bind(old.as_bytes().as_slice())
                .execute(&self.pool)
                .await;
            rename_outcome(done.map(|done| done.rows_affected()))
        })
        .await
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        bounded(self.timeout, async {
            let sql = format!("DELETE FROM {} WHERE store_key = ?", self.table.sql);
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
                "SELECT {} FROM {} WHERE user_id = ? AND {}",
                *SELECTED_TEXT,
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
                "DELETE FROM {} WHERE user_id = ? AND {} AND (? IS NULL OR store_key <> ?)",
                self.table.sql,
                Self::live()
            );
            let except = except.map(|k| k.as_bytes().to_vec());
            let done = sqlx::query(&sql)
                .bind(user)
                .bind(except.clone())
                .bind(except)
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
            "DELETE FROM {} WHERE expires_at <= {NOW} ORDER BY expires_at LIMIT ?",
            self.table.sql
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
                "SELECT {} FROM {} WHERE store_key BETWEEN ? AND ? AND {} LIMIT 1",
                *SELECTED_TEXT,
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
                "SELECT {} FROM {} WHERE {} AND (? IS NULL OR user_id = ?)
                 AND (? IS NULL OR store_key > ?) ORDER BY store_key LIMIT ?",
                *SELECTED_TEXT,
                self.table.sql,
                Self::live()
            );
            let after = query.after.map(|k| k.as_bytes().to_vec());
            let rows = sqlx::query(&sql)
                .bind(query.user.as_deref())
                .bind(query.user.as_deref())
                .bind(after.clone())
                .bind(after)
                .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await
                .map_err(store_error)?;
            entries_skipping_corrupt(&rows)
        })
        .await
    }
}
