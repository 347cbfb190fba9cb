//! The SQLite store: the embedded default.
//!
//! One table, `WITHOUT ROWID`, keyed by the 32-byte store key, with indexes on the expiry
//! and the user. WAL journaling lets readers run beside the writer. Every operation is one
//! statement; compare-and-set is `UPDATE … WHERE store_key = ? AND version = ?`, and only a
//! failed one costs a second query to tell `Conflict` from `Missing`.
//!
//! "Now" is the application's clock: SQLite is embedded, so there is only one.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use cloakroom::{
    InsertError, ListQuery, Record, RenameError, SessionEntry, SessionHandle, SessionStore,
    StoreError, StoreKey, Touch, TouchError, UpdateError,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::common::{
    bounded, entries_skipping_corrupt, failed_update, now_ms, purge_in_batches, quote_sqlite,
    record_or_absent, rename_outcome, store_error, version_param, Columns, SetupError, TableName,
    DEFAULT_OPERATION_TIMEOUT, DEFAULT_TABLE, SELECTED,
};

const LIVE: &str = "(expires_at IS NULL OR expires_at > ?1)";

/// A session store in a SQLite database file.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use cloakroom_sqlx::SqliteStore;
/// let dir = tempfile::tempdir().unwrap();
/// let store = SqliteStore::open(dir.path().join("sessions.db")).await.unwrap();
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    table: TableName,
    timeout: Duration,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` — a file path or a `sqlite://`
    /// URL — with WAL journaling, and creates the schema. A new database file is readable
    /// by its owner only (mode 0600 on Unix; SQLite gives its WAL and shared-memory files
    /// the same mode).
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<Self, SetupError> {
        Self::open_with_table(path, DEFAULT_TABLE).await
    }

    /// Like [`open`](Self::open), with another table: the name is validated before the
    /// file is opened, and only this table is created.
    pub async fn open_with_table(
        path: impl AsRef<std::path::Path>,
        table: &str,
    ) -> Result<Self, SetupError> {
        let table = TableName::new(None, table, quote_sqlite)?;
        let text = path.as_ref().to_string_lossy();
        let options = if text.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(&text).map_err(SetupError::Connect)?
        } else {
            SqliteConnectOptions::new().filename(path.as_ref())
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let in_memory = text.contains(":memory:") || text.contains("mode=memory");
        if !in_memory {
            create_private(options.get_filename()).map_err(|e| SetupError::Connect(e.into()))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(DEFAULT_OPERATION_TIMEOUT)
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

    /// A store over an existing pool; call [`migrate`](Self::migrate) if the schema may be
    /// missing.
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self {
            pool,
            table: TableName::new(None, DEFAULT_TABLE, quote_sqlite)
                .expect("the default table name is valid"),
            timeout: DEFAULT_OPERATION_TIMEOUT,
        }
    }

    /// Uses another table name (validated as a plain identifier, and quoted in SQL, so
    /// reserved words such as `order` work).
    pub fn with_table_name(mut self, table: &str) -> Result<Self, SetupError> {
        self.table = TableName::new(None, table, quote_sqlite)?;
        Ok(self)
    }

    /// Bounds every operation (default 5 s); past it the operation fails with
    /// [`StoreError::Timeout`].
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The connection pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The table as SQL names it (quoted).
    pub fn table(&self) -> &str {
        &self.table.sql
    }

    /// Creates the table and indexes if they do not exist. Idempotent.
    pub async fn migrate(&self) -> Result<(), SetupError> {
        let t = &self.table.sql;
        let index = |what: &str| quote_sqlite(&format!("{}_{what}", self.table.index_prefix));
        let (by_expiry, by_user) = (index("expires_at"), index("user_id"));
        let statements = [
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (
                    store_key BLOB PRIMARY KEY NOT NULL,
                    version INTEGER NOT NULL,
                    data TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    last_active_at INTEGER NOT NULL,
                    idle_deadline INTEGER,
                    absolute_deadline INTEGER,
                    expires_at INTEGER,
                    persistent INTEGER NOT NULL,
                    user_id TEXT,
                    ip TEXT,
                    user_agent TEXT,
                    auth_epoch TEXT
                ) WITHOUT ROWID"
            ),
            format!("CREATE INDEX IF NOT EXISTS {by_expiry} ON {t} (expires_at) WHERE expires_at IS NOT NULL"),
            format!("CREATE INDEX IF NOT EXISTS {by_user} ON {t} (user_id) WHERE user_id IS NOT NULL"),
        ];
        for statement in statements {
            sqlx::query(&statement)
                .execute(&self.pool)
                .await
                .map_err(SetupError::Migrate)?;
        }
        // Tables created before revocation by epoch lack its column.
        let (has_epoch,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = 'auth_epoch'")
                .bind(&self.table.unqualified)
                .fetch_one(&self.pool)
                .await
                .map_err(SetupError::Migrate)?;
        if has_epoch == 0 {
            sqlx::query(&format!("ALTER TABLE {t} ADD COLUMN auth_epoch TEXT"))
                .execute(&self.pool)
                .await
                .map_err(SetupError::Migrate)?;
        }
        Ok(())
    }

    async fn select(
        &self,
        condition: &str,
        binds: SelectBinds<'_>,
    ) -> Result<Vec<SessionEntry>, StoreError> {
        let sql = format!(
            "SELECT {SELECTED} FROM {} WHERE {LIVE} AND {condition}",
            self.table.sql
        );
        let mut query = sqlx::query(&sql).bind(now_ms());
        query = match binds {
            SelectBinds::User(user) => query.bind(user),
            SelectBinds::Range(low, high) => query
                .bind(low.as_bytes().to_vec())
                .bind(high.as_bytes().to_vec()),
            SelectBinds::List(user, after, limit) => query
                .bind(user)
                .bind(after.map(|k| k.as_bytes().to_vec()))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX)),
        };
        let rows = query.fetch_all(&self.pool).await.map_err(store_error)?;
        entries_skipping_corrupt(&rows)
    }
}

enum SelectBinds<'a> {
    User(&'a str),
    Range(StoreKey, StoreKey),
    List(Option<&'a str>, Option<StoreKey>, usize),
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        bounded(self.timeout, async {
            let sql = format!(
                "SELECT {SELECTED} FROM {} WHERE {LIVE} AND store_key = ?2",
                self.table.sql
            );
            let row = sqlx::query(&sql)
                .bind(now_ms())
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
            // An expired row under the same key may be replaced; a live one never.
            let sql = format!(
                "INSERT INTO {t} ({SELECTED}, expires_at) VALUES (?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT(store_key) DO UPDATE SET version = excluded.version, data = excluded.data,
                   created_at = excluded.created_at, last_active_at = excluded.last_active_at,
                   idle_deadline = excluded.idle_deadline, absolute_deadline = excluded.absolute_deadline,
                   persistent = excluded.persistent, user_id = excluded.user_id, ip = excluded.ip,
                   user_agent = excluded.user_agent, auth_epoch = excluded.auth_epoch,
                   expires_at = excluded.expires_at
                 WHERE NOT {LIVE}",
                t = self.table.sql
            );
            let done = sqlx::query(&sql)
                .bind(now_ms())
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
                .bind(c.expires_at)
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
            let expected = version_param(expected_version)?;
            let sql = format!(
                "UPDATE {} SET version = ?3 + 1, data = ?4, last_active_at = ?5, idle_deadline = ?6,
                   expires_at = CASE WHEN ?6 IS NULL THEN absolute_deadline
                                     WHEN absolute_deadline IS NULL THEN ?6
                                     ELSE MIN(?6, absolute_deadline) END,
                   persistent = ?7, user_id = ?8, ip = ?9, user_agent = ?10, auth_epoch = ?11
                 WHERE store_key = ?2 AND version = ?3 AND {LIVE}",
                self.table.sql
            );
            let now = now_ms();
            let done = sqlx::query(&sql)
                .bind(now)
                .bind(key.as_bytes().as_slice())
                .bind(expected)
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
            // Only the failure path pays this second query.
            let sql = format!(
                "SELECT 1 FROM {} WHERE {LIVE} AND store_key = ?2",
                self.table.sql
            );
            let live_row = sqlx::query(&sql)
                .bind(now)
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
                "UPDATE {} SET last_active_at = ?3, idle_deadline = ?4,
                   expires_at = CASE WHEN ?4 IS NULL THEN absolute_deadline
                                     WHEN absolute_deadline IS NULL THEN ?4
                                     ELSE MIN(?4, absolute_deadline) END
                 WHERE store_key = ?2 AND {LIVE}",
                self.table.sql
            );
            let done = sqlx::query(&sql)
                .bind(now_ms())
                .bind(key.as_bytes().as_slice())
                .bind(cloakroom::record::to_unix_ms(touch.last_active_at))
                .bind(touch.idle_deadline.map(cloakroom::record::to_unix_ms))
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
                "UPDATE {} SET store_key = ?3 WHERE store_key = ?2 AND {LIVE}",
                self.table.sql
            );
            let done = sqlx::query(&sql)
                .bind(now_ms())
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
            let sql = format!("DELETE FROM {} WHERE store_key = ?1", self.table.sql);
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
        bounded(
            self.timeout,
            self.select("user_id = ?2", SelectBinds::User(user)),
        )
        .await
    }

    async fn delete_for_user(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        bounded(self.timeout, async {
            let sql = format!(
                "DELETE FROM {} WHERE user_id = ?2 AND {LIVE} AND (?3 IS NULL OR store_key <> ?3)",
                self.table.sql
            );
            let done = sqlx::query(&sql)
                .bind(now_ms())
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
            "DELETE FROM {t} WHERE store_key IN (SELECT store_key FROM {t} WHERE expires_at <= ?1 LIMIT ?2)",
            t = self.table.sql
        );
        let sql = sql.as_str();
        purge_in_batches(batch, progress, |limit| {
            bounded(self.timeout, async move {
                let done = sqlx::query(sql)
                    .bind(now_ms())
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
        let (low, high) = handle.key_range();
        let found = bounded(
            self.timeout,
            self.select(
                "store_key BETWEEN ?2 AND ?3 LIMIT 1",
                SelectBinds::Range(low, high),
            ),
        )
        .await?;
        Ok(found.into_iter().next())
    }

    async fn list_sessions(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        bounded(
            self.timeout,
            self.select(
                "(?2 IS NULL OR user_id = ?2) AND (?3 IS NULL OR store_key > ?3) ORDER BY store_key LIMIT ?4",
                SelectBinds::List(query.user.as_deref(), query.after, query.limit),
            ),
        )
        .await
    }
}

/// Creates the database file readable by its owner only, if it does not exist yet: left to
/// SQLite it would take the process umask (typically world-readable), and SQLite gives the
/// WAL and shared-memory files the main file's mode.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    if path.as_os_str().is_empty() {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}
