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
//! | `list_for_user`, `find_by_handle`, `list_sessions` | 1 |
//! | `delete_for_user` | 1 per batch of [`REVOKE_BATCH`](crate::REVOKE_BATCH) sessions, and 1 to find none left |
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
    /// PostgreSQL's text refuses NUL ("invalid byte sequence for encoding UTF8: 0x00").
    const USER_ID_TAKES_NUL: bool = false;
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
        let prefix = &table.index_prefix;
        // Folded, as `quote` makes them and `pg_class` lists them: compared as written, a
        // table name with a capital never matched its retired indexes, which stayed.
        let (by_mark, by_user) = (
            index_name(prefix, "purge_at").to_ascii_lowercase(),
            index_name(prefix, "user_key").to_ascii_lowercase(),
        );
        // Indexes this table may have from earlier versions, as PostgreSQL named them:
        // before per-user listings were paged, the user index held the user alone; and
        // before `index_name`, a name longer than 63 bytes was cut short.
        let retired: Vec<String> = ["user_id", "purge_at", "user_key"]
            .iter()
            .map(|what| {
                let mut name = format!("{prefix}_{what}").to_ascii_lowercase();
                name.truncate(MAX_IDENTIFIER);
                name
            })
            .filter(|name| *name != by_mark && *name != by_user)
            .collect();
        // An up-to-date table is left alone: `ALTER TABLE` takes the table's strongest lock
        // even when it alters nothing, so every start (and every `cloakroom list`) queued
        // behind any open transaction that had read the table, and every session query
        // then queued behind it; it also needs the table's owner, where reading and
        // writing rows needs only those rights.
        let (columns, indexes): (i64, Vec<String>) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM pg_attribute WHERE attrelid = to_regclass($1)
                       AND attname IN ('auth_epoch', 'device_binding', 'purge_at')
                       AND NOT attisdropped),
                    ARRAY(SELECT c.relname::text FROM pg_index i
                          JOIN pg_class c ON c.oid = i.indexrelid
                          WHERE i.indrelid = to_regclass($1))",
        )
        .bind(t)
        .fetch_one(pool)
        .await
        .map_err(SetupError::Migrate)?;
        let up_to_date = columns == 3
            && indexes.contains(&by_mark)
            && indexes.contains(&by_user)
            && !indexes.iter().any(|name| retired.contains(name));
        if up_to_date {
            return Ok(());
        }
        let mut tx = pool.begin().await.map_err(SetupError::Migrate)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("cloakroom:{}", table.plain))
            .execute(&mut *tx)
            .await
            .map_err(SetupError::Migrate)?;
        // A cut name can be another table's (past 63 bytes of `schema_table`), so only
        // this table's own indexes are retired.
        let existing: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = to_regclass($1)",
        )
        .bind(t)
        .fetch_all(&mut *tx)
        .await
        .map_err(SetupError::Migrate)?;
        let schema = match &table.schema {
            Some(schema) => format!("{}.", Self::quote(schema)),
            None => String::new(),
        };
        let drops = existing
            .iter()
            .filter(|name| retired.contains(name))
            .map(|name| format!("DROP INDEX IF EXISTS {schema}{}", Self::quote(name)));
        let (by_mark, by_user) = (Self::quote(&by_mark), Self::quote(&by_user));
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
        ]
        .into_iter()
        .chain(drops)
        .chain([
            format!("CREATE INDEX IF NOT EXISTS {by_mark} ON {t} (purge_at)"),
            format!("CREATE INDEX IF NOT EXISTS {by_user} ON {t} (user_id, store_key) WHERE user_id IS NOT NULL"),
        ]);
        for statement in statements {
            sqlx::query(&statement)
                .execute(&mut *tx)
                .await
                .map_err(SetupError::Migrate)?;
        }
        tx.commit().await.map_err(SetupError::Migrate)
    }
}

/// PostgreSQL's longest identifier, in bytes (`NAMEDATALEN` - 1): it cuts longer ones
/// short, with only a notice.
const MAX_IDENTIFIER: usize = 63;

/// The name of index `what` of the table with `prefix` (`table` or `schema_table`, ASCII):
/// `prefix_what` when that fits in 63 bytes. A longer one would be cut short by PostgreSQL,
/// and the cut names of one table's indexes can be the same (`…_user_key` and `…_user_id`
/// past 56 bytes of prefix, every name past 61), so that creating the second finds the
/// first already there. So a longer name keeps as much of the prefix as fits, then a hash
/// of the whole prefix, then `what`: distinct per table and index, and the same on every
/// run.
fn index_name(prefix: &str, what: &str) -> String {
    let name = format!("{prefix}_{what}");
    if name.len() <= MAX_IDENTIFIER {
        return name;
    }
    // FNV-1a: stable across versions and platforms, which a name in a schema must be; it
    // separates tables, it does not defend against anyone.
    let hash = prefix.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    let keep = MAX_IDENTIFIER - what.len() - "_01234567_".len();
    format!("{}_{hash:08x}_{what}", &prefix[..keep])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_fit_and_stay_distinct() {
        assert_eq!(
            index_name("cloakroom_sessions", "purge_at"),
            "cloakroom_sessions_purge_at",
            "names that fit are the ones earlier versions made"
        );
        for length in 1..=127 {
            let prefix = "p".repeat(length);
            let names: Vec<String> = ["purge_at", "user_key", "user_id"]
                .iter()
                .map(|what| index_name(&prefix, what))
                .collect();
            for name in &names {
                assert!(name.len() <= MAX_IDENTIFIER, "{length}: {name}");
            }
            assert!(names[0] != names[1] && names[1] != names[2] && names[0] != names[2]);
        }
        let long = |last: char| format!("{}{last}", "t".repeat(70));
        assert_ne!(
            index_name(&long('a'), "purge_at"),
            index_name(&long('b'), "purge_at"),
            "tables whose names differ past the cut get their own indexes"
        );
    }
}
