//! What differs between the SQL databases, and nothing else: placeholders, the clock,
//! clamping, integer division, upsert, batches, quoting and the schema.

use std::fmt::Debug;
use std::future::Future;

use sqlx::Pool;

use crate::driver::Driver;
use crate::statements::Placeholders;
use crate::table::TableName;
use crate::SetupError;

/// A SQL dialect a [`SqlStore`](crate::SqlStore) speaks: one of [`Sqlite`](crate::sqlite::Sqlite),
/// [`Postgres`](crate::postgres::Postgres) or [`MySql`](crate::mysql::MySql). Sealed: the
/// store's statements are written and tested for these three only.
pub trait Dialect: sealed::Sealed {}

pub(crate) mod sealed {
    use super::*;

    /// The dialect's parts. Public in a private module: nameable by the crate only.
    pub trait Sealed: Clone + Debug + Send + Sync + 'static {
        /// The sqlx database.
        type Db: Driver;
        /// How placeholders are written.
        const PLACEHOLDERS: Placeholders;
        /// "Now" in Unix milliseconds: the database clock for the servers, the bound app
        /// clock (`:now`) for embedded SQLite.
        const NOW: &'static str;
        /// The two-argument minimum function, NULL if either is NULL for some dialects:
        /// callers wrap it in `COALESCE`. The servers' `LEAST` unless a dialect says
        /// otherwise.
        const LEAST: &'static str = "LEAST";
        /// How `user_id` is selected: the column itself, or an expression `AS user_id`
        /// where it needs one.
        const USER_ID: &'static str = "user_id";
        /// Whether `INSERT … ON CONFLICT … DO UPDATE … WHERE` may replace an expired row
        /// in the same statement: true unless a dialect says otherwise.
        const UPSERT: bool = true;
        /// Whether a trigger (made by `migrate`) moves the purge mark when an update moves
        /// `expires_at`, rather than the update itself: false unless a dialect says
        /// otherwise.
        const TRIGGER_MOVES_MARK: bool = false;
        /// Whether `user_id` can hold a NUL character: true unless a dialect says otherwise.
        /// Where it cannot, a user id holding one has no sessions, and is answered so
        /// without asking the database, which would refuse it as text.
        const USER_ID_TAKES_NUL: bool = true;
        /// The store kind, for metrics labels.
        const KIND: &'static str;

        /// Quotes a validated identifier: standard SQL's double quotes unless a dialect
        /// says otherwise.
        fn quote(name: &str) -> String {
            format!("\"{name}\"")
        }

        /// A deadline sent by the app, as the database keeps it: the servers clamp it so
        /// that, on their own clock, it lies no further ahead than the app meant
        /// (`LEAST(deadline, db_now + (deadline - app_now))`); SQLite has only one clock.
        fn clamp(deadline: &str, app_now: &str) -> String {
            format!(
                "LEAST({deadline}, {} + ({deadline} - {app_now}))",
                Self::NOW
            )
        }

        /// Whether `user` could own a row (see [`USER_ID_TAKES_NUL`](Self::USER_ID_TAKES_NUL)).
        fn has_user(user: &str) -> bool {
            Self::USER_ID_TAKES_NUL || !user.contains('\0')
        }

        /// Integer division of two `BIGINT`s: `/` unless a dialect says otherwise.
        const DIV: &'static str = "/";

        /// `statement` (a `DELETE FROM` or an `UPDATE … SET` of `table`) applied to at
        /// most `:limit` rows matching `condition`, in one short statement. For the purge:
        /// it may pass over rows another writer holds, which a later purge takes.
        fn limited(statement: &str, table: &str, condition: &str) -> String;

        /// `DELETE FROM table` of at most `:limit` rows matching `condition`, waiting for
        /// rows another writer holds: for revocations, which must not pass over a session.
        fn batch_of(table: &str, condition: &str) -> String {
            format!(
                "DELETE FROM {table} WHERE store_key IN (
                   SELECT store_key FROM {table} WHERE {condition} LIMIT :limit)"
            )
        }

        /// Creates the table and indexes if missing and upgrades older tables.
        fn migrate<'a>(
            pool: &'a Pool<Self::Db>,
            table: &'a TableName,
        ) -> impl Future<Output = Result<(), SetupError>> + Send + 'a;
    }
}

impl<D: sealed::Sealed> Dialect for D {}
