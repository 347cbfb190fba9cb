//! The SQL session store, generic over its dialect: one implementation of the store
//! contract for SQLite, PostgreSQL and MySQL/MariaDB.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cloakroom::record::to_unix_ms;
use cloakroom::{
    InsertError, ListQuery, Record, RenameError, SessionEntry, SessionHandle, SessionStore,
    StoreError, StoreKey, Touch, TouchError, UpdateError,
};
use sqlx::Pool;

use crate::dialect::Dialect;
use crate::driver::Driver;
use crate::errors::{
    bounded, is_deadlock_victim, is_unique_violation, store_error, DEFAULT_OPERATION_TIMEOUT,
};
use crate::row::{readable, Columns, Decoded};
use crate::statements::{Args, Statement, Statements};
use crate::table::TableName;
use crate::SetupError;

/// A session store in one SQL table, for the dialect `D`. Use it through
/// [`SqliteStore`](crate::SqliteStore), [`PostgresStore`](crate::PostgresStore) or
/// [`MySqlStore`](crate::MySqlStore).
///
/// One row per session, keyed by the 32-byte SHA-256 store key (never the session ID),
/// with indexes on the purge mark and the user. Every statement is built once, when the
/// store is made or its table is chosen.
///
/// # Purge marks
///
/// A row's `expires_at` is its exact deadline, and liveness is judged by it alone. It
/// moves on every write, so the purge does not find its candidates by it: it finds them
/// by `purge_at`, a mark on a five-minute grid strictly after the deadline, which a write
/// moves only when the deadline reaches it or falls more than a step short of it. A write
/// that leaves every indexed column as it was lets PostgreSQL update the row in place (a
/// HOT update) and InnoDB leave its secondary indexes alone. The purge deletes rows whose
/// mark is due within one step and whose deadline has passed, so it still takes every
/// expired row and never a live one.
///
/// ## Upgrading from a version without marks
///
/// [`migrate`](Self::migrate) adds the column (every existing row's mark 0) and its
/// index. Liveness is judged exactly as before, so instances of the older version can run
/// beside this one during a rolling upgrade. Rows they write keep an early mark (a purge
/// candidate the deadline check keeps), which [`purge_expired`](SessionStore::purge_expired)
/// mends; a mark they leave late (by shortening a deadline) waits for the row's next
/// write. `migrate` keeps the older version's index on `expires_at`, which that
/// version's purge needs; once every instance runs this version, drop it (`DROP INDEX
/// cloakroom_sessions_expires_at`, on MySQL `ALTER TABLE cloakroom_sessions DROP INDEX
/// by_expiry`, for the default table) so that writes stop rewriting it.
///
/// On PostgreSQL, `migrate` builds the new index while it holds the table's lock; on a
/// large table, build it beforehand without blocking requests:
/// `ALTER TABLE cloakroom_sessions ADD COLUMN IF NOT EXISTS purge_at BIGINT NOT NULL
/// DEFAULT 0` then `CREATE INDEX CONCURRENTLY cloakroom_sessions_purge_at ON
/// cloakroom_sessions (purge_at)`.
pub struct SqlStore<D: Dialect> {
    pool: Pool<D::Db>,
    table: TableName,
    timeout: Duration,
    sql: Arc<Statements>,
}

impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            table: self.table.clone(),
            timeout: self.timeout,
            sql: Arc::clone(&self.sql),
        }
    }
}

impl<D: Dialect> fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("pool", &self.pool)
            .field("table", &self.table.sql)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<D: Dialect> SqlStore<D> {
    /// A store over an existing pool, on the default table. Call
    /// [`migrate`](Self::migrate) if the schema may be missing.
    pub fn from_pool(pool: Pool<D::Db>) -> Self {
        Self::on(pool, TableName::default_with(D::quote))
    }

    pub(crate) fn on(pool: Pool<D::Db>, table: TableName) -> Self {
        let sql = Arc::new(Statements::new::<D>(&table.sql));
        Self {
            pool,
            table,
            timeout: DEFAULT_OPERATION_TIMEOUT,
            sql,
        }
    }

    /// A store on `table`, its schema created if missing.
    pub(crate) async fn migrated(pool: Pool<D::Db>, table: TableName) -> Result<Self, SetupError> {
        let store = Self::on(pool, table);
        store.migrate().await?;
        Ok(store)
    }

    /// Moves the store to another table (validated, then quoted).
    pub(crate) fn in_table(self, schema: Option<&str>, table: &str) -> Result<Self, SetupError> {
        let table = TableName::new(schema, table, D::quote)?;
        Ok(Self::on(self.pool, table).with_operation_timeout(self.timeout))
    }

    /// Bounds every operation (default 5 s); past it the operation fails with
    /// [`StoreError::Timeout`].
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The connection pool.
    pub fn pool(&self) -> &Pool<D::Db> {
        &self.pool
    }

    /// The table as SQL names it: quoted, and qualified if a schema or database was given.
    pub fn table(&self) -> &str {
        &self.table.sql
    }

    /// Creates the table and its indexes if missing, and brings a table an older version
    /// made up to date. Idempotent, and safe when several app servers start at once.
    pub async fn migrate(&self) -> Result<(), SetupError> {
        D::migrate(&self.pool, &self.table).await
    }

    /// Runs a writing statement, again if the database rolled it back as a deadlock's
    /// victim (two writers meeting on a user's rows in different orders: a revocation's
    /// batch and a rename, say), at most [`DEADLOCK_RETRIES`] more times; the operation's
    /// time bound still holds.
    async fn execute(&self, statement: &Statement, args: &Args<'_>) -> Result<u64, sqlx::Error> {
        let mut retries = 0;
        loop {
            match D::Db::execute(&self.pool, &statement.sql, &statement.bind(args)).await {
                Err(error) if is_deadlock_victim(&error) && retries < DEADLOCK_RETRIES => {
                    retries += 1;
                    tokio::task::yield_now().await;
                }
                done => return done,
            }
        }
    }

    /// The rows `statement` selects, decoded (a corrupt one as its error), under the
    /// operation's time bound.
    async fn rows(
        &self,
        statement: &Statement,
        args: &Args<'_>,
    ) -> Result<Vec<Decoded>, StoreError> {
        bounded(self.timeout, async {
            let rows = D::Db::fetch(&self.pool, &statement.sql, &statement.bind(args)).await;
            rows.map_err(store_error)
        })
        .await
    }

    /// One page of a listing of at most `limit` rows, under its own time bound: its
    /// readable sessions, and the key to read on from if the page came back full. A
    /// corrupt row is skipped, but its key still moves the listing on.
    async fn page(
        &self,
        statement: &Statement,
        args: &Args<'_>,
        limit: usize,
    ) -> Result<(Vec<SessionEntry>, Option<StoreKey>), StoreError> {
        let rows = self.rows(statement, args).await?;
        let full = rows.len() == limit;
        let last = rows.last().and_then(|row| match row {
            Ok(entry) => Some(entry.key),
            Err((key, _)) => *key,
        });
        Ok((readable(rows)?, last.filter(|_| full)))
    }

    /// Whether `statement` selects a row, under the operation's time bound.
    async fn exists(&self, statement: &Statement, args: &Args<'_>) -> Result<bool, StoreError> {
        bounded(self.timeout, async {
            let found = D::Db::exists(&self.pool, &statement.sql, &statement.bind(args)).await;
            found.map_err(store_error)
        })
        .await
    }

    /// Runs one batch of a purge-like statement under its own time bound.
    async fn batch(&self, statement: &Statement, args: &Args<'_>) -> Result<u64, StoreError> {
        bounded(self.timeout, async {
            let changed = self.execute(statement, args).await;
            changed.map_err(store_error)
        })
        .await
    }

    /// Inserts unless the key is taken; `Ok(false)` if it is.
    async fn try_insert(&self, args: &Args<'_>) -> Result<bool, StoreError> {
        match self.execute(&self.sql.insert, args).await {
            Ok(rows) => Ok(rows == 1),
            Err(error) if is_unique_violation(&error) => Ok(false),
            Err(error) => Err(store_error(error)),
        }
    }
}

/// How many times a writing statement the database rolled back as a deadlock's victim
/// runs again before its error is returned.
const DEADLOCK_RETRIES: u32 = 4;

/// How many sessions one page of a per-user listing reads.
const USER_PAGE: usize = 1000;

/// How many of a user's sessions one statement of [`delete_for_user`] deletes, each batch
/// under its own operation timeout: revoking a user with a million sessions finishes as
/// surely as one with three (which costs a second statement, to find none left: a batch
/// that came back short may have missed a session renamed while it ran).
///
/// [`delete_for_user`]: cloakroom::SessionStore::delete_for_user
pub const REVOKE_BATCH: u32 = 1000;

/// How many batches of a revocation in a row may find sessions left and delete none (each
/// renamed away from its batch meanwhile) before it gives up with a store error.
const REVOKE_EMPTY_BATCHES: u32 = 16;

fn key_args(key: &StoreKey) -> Args<'_> {
    Args {
        key: Some(key.as_bytes().as_slice()),
        ..Args::default()
    }
}

#[async_trait]
impl<D: Dialect> SessionStore for SqlStore<D> {
    fn kind(&self) -> &'static str {
        D::KIND
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        bounded(self.timeout, async {
            let statement = &self.sql.load;
            let args = statement.bind(&key_args(key));
            let found = D::Db::fetch_record(&self.pool, &statement.sql, &args).await;
            match found.map_err(store_error)? {
                Some(Ok(record)) => Ok(Some(record)),
                // A corrupt record is logged (by handle, never raw) and treated as absent.
                Some(Err(StoreError::Corrupt(reason))) => {
                    let handle = key.handle();
                    tracing::warn!(%handle, %reason, "corrupt session record treated as absent");
                    Ok(None)
                }
                Some(Err(error)) => Err(error),
                None => Ok(None),
            }
        })
        .await
    }

    async fn insert(&self, key: &StoreKey, record: &Record) -> Result<(), InsertError> {
        bounded(self.timeout, async {
            let columns = Columns::of(record)?;
            let args = Args::record(key.as_bytes(), &columns);
            if self.try_insert(&args).await? {
                return Ok(());
            }
            // The key is taken. An upsert has already replaced an expired row; otherwise
            // clear an expired one and try again. A live one is never replaced.
            if !self.sql.upsert {
                let cleared = self.execute(&self.sql.clear_expired, &args).await;
                if cleared.map_err(store_error)? == 1 && self.try_insert(&args).await? {
                    return Ok(());
                }
            }
            Err(InsertError::Duplicate)
        })
        .await
    }

    async fn update(&self, key: &StoreKey, record: &Record) -> Result<(), UpdateError> {
        bounded(self.timeout, async {
            let columns = Columns::of(record)?;
            let args = Args {
                expected: Some(columns.version),
                ..Args::record(key.as_bytes(), &columns)
            };
            // One statement on success. Telling Conflict from Missing in the same
            // statement cost every successful PostgreSQL write some 12% more database
            // time, so only a failed compare-and-set pays a second query for it.
            if self
                .execute(&self.sql.update, &args)
                .await
                .map_err(store_error)?
                == 1
            {
                return Ok(());
            }
            let sql = &self.sql.is_live;
            match D::Db::exists(&self.pool, &sql.sql, &sql.bind(&args)).await {
                Ok(true) => Err(UpdateError::Conflict),
                Ok(false) => Err(UpdateError::Missing),
                Err(error) => Err(store_error(error).into()),
            }
        })
        .await
    }

    async fn touch(&self, key: &StoreKey, touch: &Touch) -> Result<(), TouchError> {
        bounded(self.timeout, async {
            let args = Args {
                last_active: Some(to_unix_ms(touch.last_active_at)),
                idle: touch.idle_deadline.map(to_unix_ms),
                ..key_args(key)
            };
            match self
                .execute(&self.sql.touch, &args)
                .await
                .map_err(store_error)?
            {
                1 => Ok(()),
                _ => Err(TouchError::Missing),
            }
        })
        .await
    }

    async fn rename(&self, old: &StoreKey, new: &StoreKey) -> Result<(), RenameError> {
        bounded(self.timeout, async {
            let args = Args {
                new_key: Some(new.as_bytes().as_slice()),
                ..key_args(old)
            };
            match self.execute(&self.sql.rename, &args).await {
                Ok(1) => Ok(()),
                Ok(_) => Err(RenameError::Missing),
                Err(error) if is_unique_violation(&error) => Err(RenameError::Duplicate),
                Err(error) => Err(store_error(error).into()),
            }
        })
        .await
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        bounded(self.timeout, async {
            let deleted = self.execute(&self.sql.delete, &key_args(key)).await;
            Ok(deleted.map_err(store_error)? > 0)
        })
        .await
    }

    /// Reads the user's sessions a page at a time, each page one statement under its own
    /// time bound, so a user with any number of sessions is listed in full.
    async fn list_for_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError> {
        let mut entries = Vec::new();
        if !D::has_user(user) {
            return Ok(entries);
        }
        let mut after: Vec<u8> = Vec::new();
        loop {
            let args = Args {
                user: Some(user),
                after: Some(&after),
                limit: Some(USER_PAGE as i64),
                ..Args::default()
            };
            let (page, next) = self.page(&self.sql.list_for_user, &args, USER_PAGE).await?;
            entries.extend(page);
            match next {
                Some(last) => after = last.as_bytes().to_vec(),
                None => return Ok(entries),
            }
        }
    }

    async fn delete_for_user(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        if !D::has_user(user) {
            return Ok(0);
        }
        let args = Args {
            user: Some(user),
            except: except.map(|key| key.as_bytes().as_slice()),
            limit: Some(i64::from(REVOKE_BATCH)),
            ..Args::default()
        };
        // Until no session is left to find, not until a batch comes back short or empty:
        // a session renamed while its batch ran is missed by that batch under its new key
        // (PostgreSQL re-checks a row a rename moved against the batch's list of keys, and
        // skips it), and found by the next.
        let mut total = 0;
        let mut empty_batches = 0;
        loop {
            let deleted = self.batch(&self.sql.delete_for_user, &args).await?;
            total += deleted;
            if deleted == u64::from(REVOKE_BATCH) {
                continue;
            }
            if !self.exists(&self.sql.has_for_user, &args).await? {
                return Ok(total);
            }
            if deleted == 0 {
                empty_batches += 1;
                if empty_batches == REVOKE_EMPTY_BATCHES {
                    return Err(StoreError::unavailable(format!(
                        "the user's sessions kept being renamed away from {REVOKE_EMPTY_BATCHES} \
                         revocation batches in a row; {total} were revoked, retry for the rest"
                    )));
                }
            }
        }
    }

    async fn purge_expired(&self, batch: usize) -> Result<u64, StoreError> {
        self.purge_expired_with_progress(batch, &mut |_| {}).await
    }

    /// Deletes expired rows a batch at a time until a batch comes back short, each batch
    /// one short statement under its own time bound, so writers never wait behind a
    /// long lock. Before that it mends stale purge marks the same way (see
    /// [`SqlStore`]'s "Purge marks"), so that rows an older version wrote stop coming up
    /// as candidates.
    async fn purge_expired_with_progress(
        &self,
        batch: usize,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64, StoreError> {
        let batch = batch.max(1);
        let args = Args {
            limit: Some(i64::try_from(batch).unwrap_or(i64::MAX)),
            ..Args::default()
        };
        // Stale marks first: right after an upgrade every row's mark is 0, and each would
        // be a purge candidate for the deadline check to keep, read (and on MySQL locked)
        // by every purge batch. Mending comes first in the mark's index order, so each of
        // its batches is short.
        while self.batch(&self.sql.mend_marks, &args).await? == batch as u64 {}
        let mut total = 0;
        loop {
            let deleted = self.batch(&self.sql.purge, &args).await?;
            total += deleted;
            progress(deleted);
            if deleted < batch as u64 {
                return Ok(total);
            }
        }
    }

    async fn find_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionEntry>, StoreError> {
        let (low, high) = handle.key_range();
        let args = Args {
            low: Some(low.as_bytes().as_slice()),
            high: Some(high.as_bytes().as_slice()),
            ..Args::default()
        };
        let found = readable(self.rows(&self.sql.find_by_handle, &args).await?)?;
        Ok(found.into_iter().next())
    }

    /// A corrupt row is skipped, but it counted against the page's `LIMIT`: the listing
    /// reads on from its key, a page at a time under its own time bound, until it has
    /// `limit` readable sessions or the table ends. A short page means the end, as callers
    /// take it.
    async fn list_sessions(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        let mut entries = Vec::new();
        if query.user.as_deref().is_some_and(|user| !D::has_user(user)) {
            return Ok(entries);
        }
        let mut after = query.after.map(|key| key.as_bytes().to_vec());
        while entries.len() < query.limit {
            let wanted = query.limit - entries.len();
            let args = Args {
                user: query.user.as_deref(),
                after: after.as_deref(),
                limit: Some(i64::try_from(wanted).unwrap_or(i64::MAX)),
                ..Args::default()
            };
            let (page, next) = self.page(&self.sql.list_sessions, &args, wanted).await?;
            entries.extend(page);
            match next {
                Some(last) => after = Some(last.as_bytes().to_vec()),
                None => break,
            }
        }
        Ok(entries)
    }
}
