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
//! | `purge_expired` | 1 per batch (`FOR UPDATE SKIP LOCKED`, so it never blocks requests for long), and 1 per batch of stale purge marks mended |
//!
//! ## Clocks
//!
//! Several app servers may disagree about the time, so liveness is judged by the
//! **database's** clock (`now()`), the one clock they all share. Deadlines the app sends
//! are clamped so that, measured on the database clock, they lie no further ahead than the
//! app meant (`LEAST(deadline, db_now + (deadline - app_now))`), and the absolute
//! deadline is fixed at insert. An app whose clock runs fast therefore cannot keep a
//! session alive past its absolute deadline; one whose clock runs slow only shortens it.

use sqlx::PgPool;

use crate::dialect::sealed::Sealed;
use crate::server::Server;
use crate::statements::Placeholders;
use crate::table::TableName;
use crate::{SetupError, SqlStore};

/// The PostgreSQL dialect of [`SqlStore`].
#[derive(Clone, Copy, Debug)]
pub struct Postgres;

/// A session store in a PostgreSQL table.
///
/// ```no_run
/// # async fn demo() -> Result<(), cloakroom_sqlx::SetupError> {
/// use cloakroom_sqlx::PostgresStore;
/// let store = PostgresStore::connect("postgres://localhost/app").await?;
/// # Ok(()) }
/// ```
pub type PostgresStore = SqlStore<Postgres>;

impl Server for Postgres {}

impl Sealed for Postgres {
    type Db = sqlx::Postgres;
    const PLACEHOLDERS: Placeholders = Placeholders::Dollar;
    const NOW: &'static str = "(FLOOR(EXTRACT(EPOCH FROM now()) * 1000)::BIGINT)";
    const KIND: &'static str = "postgres";

    /// PostgreSQL folds unquoted names to lower case, so the name is folded before
    /// quoting: `MyTable` stays the table it named before names were quoted.
    fn quote(name: &str) -> String {
        format!("\"{}\"", name.to_ascii_lowercase())
    }

    fn limited(statement: &str, t: &str, condition: &str) -> String {
        format!(
            "{statement} WHERE store_key IN (
               SELECT store_key FROM {t} WHERE {condition} LIMIT :limit FOR UPDATE SKIP LOCKED)"
        )
    }

    /// Idempotent, and safe when several app servers start at once (an advisory lock
    /// serialises them).
    async fn migrate(pool: &PgPool, table: &TableName) -> Result<(), SetupError> {
        let t = &table.sql;
        let index = |what: &str| Self::quote(&format!("{}_{what}", table.index_prefix));
        let (by_mark, by_user) = (index("purge_at"), index("user_key"));
        // Before per-user listings were paged, the user index held the user alone.
        let old_by_user = match &table.schema {
            Some(schema) => format!("{}.{}", Self::quote(schema), index("user_id")),
            None => index("user_id"),
        };
        let mut tx = pool.begin().await.map_err(SetupError::Migrate)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("cloakroom:{}", table.plain))
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
                    auth_epoch TEXT,
                    device_binding TEXT,
                    purge_at BIGINT NOT NULL DEFAULT 0
                )"
            ),
            // Tables created before revocation by epoch lack its column.
            format!("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS auth_epoch TEXT"),
            // ... and before device-bound sessions, the binding's.
            format!("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS device_binding TEXT"),
            // ... and before purge marks, the mark's (0: a purge candidate until mended).
            // An older version's index on the expiry stays: its purge needs it while it
            // runs beside this one (see `SqlStore`'s "Upgrading").
            format!("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS purge_at BIGINT NOT NULL DEFAULT 0"),
            format!("CREATE INDEX IF NOT EXISTS {by_mark} ON {t} (purge_at)"),
            format!("CREATE INDEX IF NOT EXISTS {by_user} ON {t} (user_id, store_key) WHERE user_id IS NOT NULL"),
            format!("DROP INDEX IF EXISTS {old_by_user}"),
        ];
        for statement in statements {
            sqlx::query(&statement)
                .execute(&mut *tx)
                .await
                .map_err(SetupError::Migrate)?;
        }
        tx.commit().await.map_err(SetupError::Migrate)
    }
}
