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
//! | `list_for_user`, `find_by_handle`, `list_sessions` | 1 |
//! | `delete_for_user` | 1 per batch of [`REVOKE_BATCH`](crate::REVOKE_BATCH) sessions, and 1 to find none left |
//! | `purge_expired` | 1 per batch (`DELETE … ORDER BY purge_at, store_key LIMIT n`), and 1 per batch of stale purge marks mended |
//!
//! MySQL has no `INSERT … RETURNING` nor a data-modifying CTE, hence the extra query on
//! the failure paths; the success paths are one statement each.
//!
//! User ids are kept as bytes (`VARBINARY`) and compared exactly: a `utf8mb4_bin` text
//! column is PAD SPACE (`'alice ' = 'alice'`), and MariaDB and MySQL share no NO PAD text
//! collation. [`migrate`](crate::SqlStore::migrate) converts a table an older version made.
//!
//! ## Clocks
//!
//! As for PostgreSQL: liveness is judged by the **database's** clock (`NOW(3)`), deadlines
//! from the app are clamped so that they lie no further ahead on the database clock than
//! the app meant, and the absolute deadline is fixed at insert. A fast app clock cannot
//! keep a session alive past its absolute deadline.

use sqlx::MySqlPool;

use crate::dialect::sealed::Sealed;
use crate::driver::run_schema;
use crate::server::Server;
use crate::statements::Placeholders;
use crate::table::TableName;
use crate::{SetupError, SqlStore};

/// The MySQL / MariaDB dialect of [`SqlStore`].
#[derive(Clone, Copy, Debug)]
pub struct MySql;

/// A session store in a MySQL or MariaDB table (InnoDB).
///
/// ```no_run
/// # async fn demo() -> Result<(), cloakroom_sqlx::SetupError> {
/// use cloakroom_sqlx::MySqlStore;
/// let store = MySqlStore::connect("mysql://root@localhost/app").await?;
/// # Ok(()) }
/// ```
pub type MySqlStore = SqlStore<MySql>;

/// The type of the `user_id` column: bytes, compared exactly. 1020 bytes hold the 255
/// characters the text column of older versions allowed.
const USER_ID_TYPE: &str = "VARBINARY(1020)";

impl Server for MySql {}

impl Sealed for MySql {
    type Db = sqlx::MySql;
    const PLACEHOLDERS: Placeholders = Placeholders::Question;
    const NOW: &'static str = "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)";
    /// `user_id` is bytes, so it is read back through a text conversion.
    const USER_ID: &'static str = "CONVERT(user_id USING utf8mb4) AS user_id";
    /// MySQL's upsert cannot be made conditional on the old row being expired.
    const UPSERT: bool = false;
    const KIND: &'static str = "mysql";

    fn quote(name: &str) -> String {
        format!("`{name}`")
    }

    const DIV: &'static str = "DIV";

    /// Ordered by the whole mark index (InnoDB ends it with the primary key), so that
    /// the rows a batch takes are determined, as statement-based replication requires.
    fn limited(statement: &str, _t: &str, condition: &str) -> String {
        format!("{statement} WHERE {condition} ORDER BY purge_at, store_key LIMIT :limit")
    }

    /// MySQL refuses a `LIMIT` in a subquery of `IN`, and needs none: its `DELETE` takes
    /// one. No `ORDER BY`, which MySQL would answer with a sort of all the user's rows on
    /// every batch.
    fn batch_of(table: &str, condition: &str) -> String {
        format!("DELETE FROM {table} WHERE {condition} LIMIT :limit")
    }

    /// Also brings a table an older version made up to date: the `auth_epoch`,
    /// `device_binding` and `purge_at` columns, and `user_id` as exact bytes. Idempotent,
    /// and safe when several app servers start at once (a named lock serialises them).
    async fn migrate(pool: &MySqlPool, table: &TableName) -> Result<(), SetupError> {
        let t = &table.sql;
        let create = format!(
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
                device_binding TEXT NULL,
                purge_at BIGINT NOT NULL DEFAULT 0,
                INDEX by_purge (purge_at),
                -- ordered by (user, key): InnoDB ends a secondary index with the primary key
                INDEX by_user (user_id)
            ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"
        );
        run_schema(pool, &[create]).await?;
        // Several app servers may upgrade one table at once: a named lock serialises them,
        // and each looks at the table only once it holds it. The lock is the
        // connection's, so everything runs on one.
        let mut conn = pool.acquire().await.map_err(SetupError::Migrate)?;
        let lock: String = format!("cloakroom:{}", table.plain)
            .chars()
            .take(64)
            .collect();
        // As long as another instance's upgrade takes (a `MODIFY` rebuilds the table), as
        // PostgreSQL's advisory lock waits: going on without the lock after a time out
        // raced that upgrade into "Duplicate column" and failed this instance's start.
        loop {
            let held: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 60)")
                .bind(&lock)
                .fetch_one(&mut *conn)
                .await
                .map_err(SetupError::Migrate)?;
            match held {
                Some(1) => break,
                Some(_) => tracing::warn!(
                    table = %table.plain,
                    "still waiting for another instance to finish upgrading the session table"
                ),
                None => {
                    return Err(SetupError::Migrate(sqlx::Error::Protocol(format!(
                        "GET_LOCK({lock:?}) failed"
                    ))))
                }
            }
        }
        let upgraded = upgrade(&mut conn, table).await;
        let released = sqlx::query("SELECT RELEASE_LOCK(?)")
            .bind(&lock)
            .execute(&mut *conn)
            .await;
        upgraded?;
        released.map(drop).map_err(SetupError::Migrate)
    }
}

/// Brings a table an older version made up to date (MySQL has no `ADD COLUMN IF NOT
/// EXISTS`: it looks at what the table has).
async fn upgrade(conn: &mut sqlx::MySqlConnection, table: &TableName) -> Result<(), SetupError> {
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(column_name AS CHAR), CAST(data_type AS CHAR) FROM information_schema.columns
         WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?",
    )
    .bind(table.schema.as_deref())
    .bind(&table.unqualified)
    .fetch_all(&mut *conn)
    .await
    .map_err(SetupError::Migrate)?;
    let type_of = |name: &str| {
        columns
            .iter()
            .find(|(column, _)| column.eq_ignore_ascii_case(name))
            .map(|(_, kind)| kind.to_ascii_lowercase())
    };
    let (has_mark_index,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM information_schema.statistics
         WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ? AND index_name = 'by_purge'",
    )
    .bind(table.schema.as_deref())
    .bind(&table.unqualified)
    .fetch_one(&mut *conn)
    .await
    .map_err(SetupError::Migrate)?;
    let mut changes = Vec::new();
    // Tables created before revocation by epoch lack its column.
    if type_of("auth_epoch").is_none() {
        changes.push("ADD COLUMN auth_epoch VARCHAR(255) NULL".to_owned());
    }
    // ... and before device-bound sessions, the binding's.
    if type_of("device_binding").is_none() {
        changes.push("ADD COLUMN device_binding TEXT NULL".to_owned());
    }
    // Tables created before user ids compared exactly hold them as PAD SPACE text.
    if type_of("user_id").is_some_and(|kind| kind != "varbinary") {
        changes.push(format!("MODIFY user_id {USER_ID_TYPE} NULL"));
    }
    // ... and before purge marks, the mark and its index (a mark of 0 is a purge
    // candidate until mended). An older version's index on the expiry stays: its purge
    // needs it while it runs beside this one (see `SqlStore`'s "Upgrading").
    if type_of("purge_at").is_none() {
        changes.push("ADD COLUMN purge_at BIGINT NOT NULL DEFAULT 0".to_owned());
    }
    if has_mark_index == 0 {
        changes.push("ADD INDEX by_purge (purge_at)".to_owned());
    }
    if changes.is_empty() {
        return Ok(());
    }
    let alter = format!("ALTER TABLE {} {}", table.sql, changes.join(", "));
    sqlx::query(&alter)
        .execute(&mut *conn)
        .await
        .map(drop)
        .map_err(SetupError::Migrate)
}
