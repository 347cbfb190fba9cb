//! The SQLite store: the embedded default.
//!
//! One table, `WITHOUT ROWID`, keyed by the 32-byte store key, with indexes on the purge
//! mark and the user. WAL journaling lets readers run beside the writer. Every operation is one
//! statement (an insert replaces an expired row with an upsert), but for the purge and
//! revoking a user's sessions, which go in batches; compare-and-set is
//! `UPDATE … WHERE store_key = ? AND version = ?`, and only a failed one costs a second
//! query to tell `Conflict` from `Missing`.
//!
//! "Now" is the application's clock: SQLite is embedded, so there is only one.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::dialect::sealed::Sealed;
use crate::driver::run_schema;
use crate::errors::{sqlite_result_code, DEFAULT_OPERATION_TIMEOUT, SQLITE_BUSY};
use crate::statements::{mark_fits, purge_mark, Placeholders, NEVER};
use crate::table::{TableName, DEFAULT_TABLE};
use crate::{SetupError, SqlStore};

/// The SQLite dialect of [`SqlStore`].
#[derive(Clone, Copy, Debug)]
pub struct Sqlite;

/// A session store in a SQLite database file.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use cloakroom_sqlx::SqliteStore;
/// let dir = tempfile::tempdir().unwrap();
/// let store = SqliteStore::open(dir.path().join("sessions.db")).await.unwrap();
/// # });
/// ```
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Opens (creating if needed) the database at `path` — a file path or a `sqlite://`
    /// URL — with WAL journaling, and creates the schema. A new database file is readable
    /// by its owner only (mode 0600 on Unix; SQLite gives its WAL and shared-memory files
    /// the same mode). An in-memory database (`sqlite::memory:`, `:memory:`) lives in one
    /// connection the pool never closes, since each connection to it is a database of its
    /// own; give [`from_pool`](SqlStore::from_pool) such a pool too.
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<Self, SetupError> {
        Self::open_with_table(path, DEFAULT_TABLE).await
    }

    /// Like [`open`](Self::open), with another table: the name is validated before the
    /// file is opened, and only this table is created.
    pub async fn open_with_table(
        path: impl AsRef<std::path::Path>,
        table: &str,
    ) -> Result<Self, SetupError> {
        let table = TableName::new(None, table, Sqlite::quote)?;
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
            .busy_timeout(BUSY_TIMEOUT);
        let in_memory = text.contains(":memory:") || text.contains("mode=memory");
        if !in_memory {
            create_private(options.get_filename()).map_err(|e| SetupError::Connect(e.into()))?;
        }
        let pool = if in_memory {
            // Every connection to `:memory:` is a database of its own: one connection,
            // never closed for idleness or age, holds the sessions for the store's life.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(8)
        };
        // No ping before each acquire (sqlx's default): the database is a local file, a
        // connection to it does not die of a network, and each ping is one more round
        // trip to the connection's worker thread on every operation (some 1,900
        // instructions of a 66,000-instruction read request under callgrind).
        let pool = pool
            .test_before_acquire(false)
            .acquire_timeout(DEFAULT_OPERATION_TIMEOUT);
        // Two processes opening one file at once (two app servers starting together):
        // the first to turn on WAL journaling holds the file whole for a moment, and
        // SQLite answers the other "database is locked" at once, without waiting out its
        // busy timeout. So the other tries again, for as long as that timeout.
        let started = std::time::Instant::now();
        let pool = loop {
            match pool.clone().connect_with(options.clone()).await {
                Ok(pool) => break pool,
                Err(error) if is_busy(&error) && started.elapsed() < BUSY_TIMEOUT => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(error) => return Err(SetupError::Connect(error)),
            }
        };
        Self::migrated(pool, table).await
    }

    /// Uses another table name (validated as a plain identifier, and quoted in SQL, so
    /// reserved words such as `order` work).
    pub fn with_table_name(self, table: &str) -> Result<Self, SetupError> {
        self.in_table(None, table)
    }
}

impl Sealed for Sqlite {
    type Db = sqlx::Sqlite;
    const PLACEHOLDERS: Placeholders = Placeholders::NumberedQuestion;
    const NOW: &'static str = ":now";
    /// SQLite has no `LEAST`; its two-argument `MIN` is the same function.
    const LEAST: &'static str = "MIN";
    /// SQLite rewrites the entry of every index whose column an `UPDATE` assigns, even to
    /// the value it had: assigning the mark on every write would write the mark index's
    /// page to the WAL on every write. A trigger assigns it only when it must move.
    const TRIGGER_MOVES_MARK: bool = true;
    const KIND: &'static str = "sqlite";
    // Names are quoted the standard way; SQLite ignores their case, quoted or not.

    fn clamp(deadline: &str, _app_now: &str) -> String {
        deadline.to_owned()
    }

    fn limited(statement: &str, t: &str, condition: &str) -> String {
        format!("{statement} WHERE store_key IN (SELECT store_key FROM {t} WHERE {condition} LIMIT :limit)")
    }

    async fn migrate(pool: &SqlitePool, table: &TableName) -> Result<(), SetupError> {
        let t = &table.sql;
        let index = |what: &str| Self::quote(&format!("{}_{what}", table.index_prefix));
        let (by_mark, by_user) = (index("purge_at"), index("user_id"));
        let moves_mark = index("moves_purge_at");
        let mark = purge_mark("NEW.expires_at", Self::DIV);
        let fits = mark_fits("NEW.purge_at", "NEW.expires_at");
        let create = format!(
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
                    auth_epoch TEXT,
                    device_binding TEXT,
                    purge_at INTEGER NOT NULL DEFAULT 0
                ) WITHOUT ROWID"
        );
        run_schema(pool, &[create]).await?;
        // Several processes may open one file at once: the write lock, taken up front,
        // makes each look at the table only once the upgrade before it is done (looking,
        // then altering, apart, let a second add a column the first had just added).
        let mut upgrade = loop {
            match pool.begin_with("BEGIN IMMEDIATE").await {
                Ok(upgrade) => break upgrade,
                // Another process's upgrade outlasted the busy timeout (an index made on a
                // large table): wait on, as on the servers, rather than fail to start.
                Err(error) if is_busy(&error) => tracing::warn!(
                    table = %table.plain,
                    "still waiting for another process to finish upgrading the session table"
                ),
                Err(error) => return Err(SetupError::Migrate(error)),
            }
        };
        // Tables created before revocation by epoch, before device-bound sessions or
        // before purge marks lack their column (a mark of 0 is a purge candidate until
        // mended).
        let mut statements = Vec::new();
        for (column, kind) in [
            ("auth_epoch", "TEXT"),
            ("device_binding", "TEXT"),
            ("purge_at", "INTEGER NOT NULL DEFAULT 0"),
        ] {
            let (present,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2")
                    .bind(&table.unqualified)
                    .bind(column)
                    .fetch_one(&mut *upgrade)
                    .await
                    .map_err(SetupError::Migrate)?;
            if present == 0 {
                statements.push(format!("ALTER TABLE {t} ADD COLUMN {column} {kind}"));
            }
        }
        // An older version's index on the expiry stays: its purge needs it while it runs
        // beside this one (see `SqlStore`'s "Upgrading").
        statements.extend([
            format!("CREATE INDEX IF NOT EXISTS {by_mark} ON {t} (purge_at)"),
            // Ordered by (user, key): a WITHOUT ROWID index ends with the primary key.
            format!(
                "CREATE INDEX IF NOT EXISTS {by_user} ON {t} (user_id) WHERE user_id IS NOT NULL"
            ),
            // The mark moves when the deadline reaches it or falls more than a step short
            // of it, as the servers' update statement moves it.
            format!(
                "CREATE TRIGGER IF NOT EXISTS {moves_mark} AFTER UPDATE OF expires_at ON {t}
                 WHEN CASE WHEN NEW.expires_at IS NULL THEN NEW.purge_at <> {NEVER}
                   ELSE NOT ({fits}) END
                 BEGIN UPDATE {t} SET purge_at = {mark} WHERE store_key = NEW.store_key; END"
            ),
        ]);
        for statement in &statements {
            sqlx::query(statement)
                .execute(&mut *upgrade)
                .await
                .map_err(SetupError::Migrate)?;
        }
        upgrade.commit().await.map_err(SetupError::Migrate)
    }
}

/// How long a statement waits for another connection's lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether SQLite refused for a lock another connection holds (`SQLITE_BUSY`, extended
/// codes included).
fn is_busy(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(sqlite_result_code) == Some(SQLITE_BUSY)
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
