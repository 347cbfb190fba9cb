//! Every statement a store runs, written once with named parameters (`:key`) and turned
//! into the dialect's SQL when the store is built, never per call.

use cloakroom::record::to_unix_ms;
use time::OffsetDateTime;

use crate::dialect::Dialect;
use crate::driver::Bound;
use crate::row::{record_columns, selected, Columns};

/// A named parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    Key,
    NewKey,
    Version,
    Expected,
    Data,
    CreatedAt,
    LastActive,
    Idle,
    Absolute,
    Persistent,
    UserId,
    Ip,
    UserAgent,
    AuthEpoch,
    DeviceBinding,
    /// The app's clock (SQLite judges liveness by it; the servers use their own).
    Now,
    User,
    Except,
    Low,
    High,
    After,
    Limit,
}

const NAMES: &[(&str, Param)] = &[
    ("key", Param::Key),
    ("new_key", Param::NewKey),
    ("version", Param::Version),
    ("expected", Param::Expected),
    ("data", Param::Data),
    ("created_at", Param::CreatedAt),
    ("last_active", Param::LastActive),
    ("idle", Param::Idle),
    ("absolute", Param::Absolute),
    ("persistent", Param::Persistent),
    ("user_id", Param::UserId),
    ("ip", Param::Ip),
    ("user_agent", Param::UserAgent),
    ("auth_epoch", Param::AuthEpoch),
    ("device_binding", Param::DeviceBinding),
    ("now", Param::Now),
    ("user", Param::User),
    ("except", Param::Except),
    ("low", Param::Low),
    ("high", Param::High),
    ("after", Param::After),
    ("limit", Param::Limit),
];

/// How a dialect writes placeholders.
#[derive(Clone, Copy, Debug)]
pub enum Placeholders {
    /// `$1`, `$2`, … reusable (PostgreSQL).
    Dollar,
    /// `?1`, `?2`, … reusable (SQLite).
    NumberedQuestion,
    /// `?`, one per use, bound in order (MySQL).
    Question,
}

/// A statement in the dialect's SQL, and which value each placeholder takes.
#[derive(Clone, Debug)]
pub struct Statement {
    pub sql: String,
    params: Vec<Param>,
}

impl Statement {
    /// Replaces each `:name` in `template` with a placeholder. A `::` (a PostgreSQL cast)
    /// is left alone.
    pub fn compile(template: &str, style: Placeholders) -> Self {
        let mut sql = String::with_capacity(template.len());
        let mut params: Vec<Param> = Vec::new();
        let mut rest = template;
        while let Some(at) = rest.find(':') {
            sql.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let name_len = after
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(after.len());
            let param = NAMES
                .iter()
                .find(|(name, _)| *name == &after[..name_len])
                .map(|&(_, param)| param);
            match param {
                Some(param) if !sql.ends_with(':') => {
                    let number = match style {
                        Placeholders::Question => {
                            params.push(param);
                            None
                        }
                        _ => Some(match params.iter().position(|&p| p == param) {
                            Some(index) => index + 1,
                            None => {
                                params.push(param);
                                params.len()
                            }
                        }),
                    };
                    match (style, number) {
                        (Placeholders::Dollar, Some(n)) => sql.push_str(&format!("${n}")),
                        (_, Some(n)) => sql.push_str(&format!("?{n}")),
                        (_, None) => sql.push('?'),
                    }
                    rest = &after[name_len..];
                }
                _ => {
                    sql.push(':');
                    rest = after;
                }
            }
        }
        sql.push_str(rest);
        Self { sql, params }
    }

    /// The values to bind, in placeholder order.
    pub fn bind<'a>(&self, args: &Args<'a>) -> Vec<Bound<'a>> {
        self.params.iter().map(|&param| args.get(param)).collect()
    }
}

/// The values one call binds; whatever a statement names and the call leaves out is NULL.
#[derive(Default)]
pub struct Args<'a> {
    pub key: Option<&'a [u8]>,
    pub new_key: Option<&'a [u8]>,
    pub except: Option<&'a [u8]>,
    pub low: Option<&'a [u8]>,
    pub high: Option<&'a [u8]>,
    pub after: Option<&'a [u8]>,
    pub expected: Option<i64>,
    pub last_active: Option<i64>,
    pub idle: Option<i64>,
    pub limit: Option<i64>,
    pub user: Option<&'a str>,
    pub record: Option<&'a Columns>,
}

impl<'a> Args<'a> {
    /// The arguments for writing `record` under `key`.
    pub fn record(key: &'a [u8], record: &'a Columns) -> Self {
        Self {
            key: Some(key),
            last_active: Some(record.last_active_at),
            idle: record.idle_deadline,
            record: Some(record),
            ..Self::default()
        }
    }

    fn get(&self, param: Param) -> Bound<'a> {
        let record = self.record;
        let text = |field: fn(&'a Columns) -> &'a Option<String>| {
            Bound::Text(record.and_then(|c| field(c).as_deref()))
        };
        let int = |field: fn(&Columns) -> Option<i64>| Bound::Int(record.and_then(field));
        match param {
            Param::Key => Bound::Bytes(self.key),
            Param::NewKey => Bound::Bytes(self.new_key),
            Param::Except => Bound::Bytes(self.except),
            Param::Low => Bound::Bytes(self.low),
            Param::High => Bound::Bytes(self.high),
            Param::After => Bound::Bytes(self.after),
            Param::Expected => Bound::Int(self.expected),
            Param::LastActive => Bound::Int(self.last_active),
            Param::Idle => Bound::Int(self.idle),
            Param::Limit => Bound::Int(self.limit),
            Param::Now => Bound::Int(Some(to_unix_ms(OffsetDateTime::now_utc()))),
            Param::User => Bound::Text(self.user),
            Param::Version => int(|c| Some(c.version)),
            Param::CreatedAt => int(|c| Some(c.created_at)),
            Param::Absolute => int(|c| c.absolute_deadline),
            Param::Data => Bound::Text(record.map(|c| c.data.as_str())),
            Param::Persistent => Bound::Bool(record.is_some_and(|c| c.persistent)),
            Param::UserId => text(|c| &c.user_id),
            Param::Ip => text(|c| &c.ip),
            Param::UserAgent => text(|c| &c.user_agent),
            Param::AuthEpoch => text(|c| &c.auth_epoch),
            Param::DeviceBinding => text(|c| &c.device_binding),
        }
    }
}

/// How far past a session's expiry its purge mark may lie, in milliseconds.
///
/// Liveness is judged by `expires_at`, which moves on every write. If the purge index
/// covered that column, every write would rewrite the index entry, and PostgreSQL could
/// never update a row in place (a HOT update): each write would add entries to all of the
/// table's indexes. So the index covers `purge_at` instead, a mark on a five-minute grid
/// that moves only when the expiry reaches it (or falls more than a step short of it).
/// Five minutes of writes to one session move it at most once.
pub const PURGE_STEP_MS: i64 = 300_000;

/// The purge mark of a session that never expires.
pub const NEVER: i64 = i64::MAX;

/// The purge mark for the deadline `expiry` (SQL, in milliseconds, NULL for never): the
/// first grid point strictly after it, so a purge never takes a row early. `div` is the
/// dialect's integer division.
pub fn purge_mark(expiry: &str, div: &str) -> String {
    let step = PURGE_STEP_MS;
    format!("COALESCE((({expiry}) {div} {step}) * {step} + {step}, {NEVER})")
}

/// Whether the purge mark `mark` still fits the deadline `expiry` (SQL; NULL when
/// `expiry` is): after it, by at most one step. A write keeps a mark that fits and moves
/// one that does not; the store's update and SQLite's trigger both ask this.
pub fn mark_fits(mark: &str, expiry: &str) -> String {
    format!("{mark} > ({expiry}) AND {mark} <= ({expiry}) + {PURGE_STEP_MS}")
}

/// Every statement of one store, built for its dialect and table.
#[derive(Debug)]
pub struct Statements {
    pub load: Statement,
    pub insert: Statement,
    /// Whether `insert` replaces an expired row itself (an upsert); if not, the store
    /// runs `clear_expired` and inserts again.
    pub upsert: bool,
    pub clear_expired: Statement,
    pub update: Statement,
    pub is_live: Statement,
    pub touch: Statement,
    pub rename: Statement,
    pub delete: Statement,
    pub list_for_user: Statement,
    /// Deletes a batch of a user's live sessions.
    pub delete_for_user: Statement,
    /// Whether `delete_for_user` would find a session to delete.
    pub has_for_user: Statement,
    /// Deletes a batch of expired rows.
    pub purge: Statement,
    /// Moves a batch of stale purge marks (set by a version before the mark existed, or
    /// left behind by one that did not move it) to where they belong.
    pub mend_marks: Statement,
    pub find_by_handle: Statement,
    pub list_sessions: Statement,
}

impl Statements {
    pub fn new<D: Dialect>(t: &str) -> Self {
        let now = D::NOW;
        let live = format!("(expires_at IS NULL OR expires_at > {now})");
        let cols = selected(D::USER_ID);
        let idle = D::clamp(":idle", ":last_active");
        let absolute = D::clamp(":absolute", ":created_at");
        let earliest = |a: &str, b: &str| format!("COALESCE({}({a}, {b}), {a}, {b})", D::LEAST);
        let expiry = earliest(&idle, &absolute);
        let step = PURGE_STEP_MS;
        let mark = |expiry: &str| purge_mark(expiry, D::DIV);
        let others_of_user =
            format!("user_id = :user AND {live} AND (:except IS NULL OR store_key <> :except)");
        let upsert = if D::UPSERT {
            format!(
                " ON CONFLICT (store_key) DO UPDATE SET version = excluded.version,
                   data = excluded.data, created_at = excluded.created_at,
                   last_active_at = excluded.last_active_at, idle_deadline = excluded.idle_deadline,
                   absolute_deadline = excluded.absolute_deadline, persistent = excluded.persistent,
                   user_id = excluded.user_id, ip = excluded.ip, user_agent = excluded.user_agent,
                   auth_epoch = excluded.auth_epoch, device_binding = excluded.device_binding,
                   expires_at = excluded.expires_at, purge_at = excluded.purge_at
                 WHERE cur.expires_at IS NOT NULL AND cur.expires_at <= {now}"
            )
        } else {
            String::new()
        };
        let alias = if D::UPSERT { " AS cur" } else { "" };
        let moved = earliest(&idle, "absolute_deadline");
        // The mark stays put while the expiry moves within its step, so the indexed
        // column keeps its value and the row can be updated in place. MySQL assigns left
        // to right, so nothing here reads a column this statement has already set. Where
        // a trigger moves the mark, the statement leaves it out.
        let remark = if D::TRIGGER_MOVES_MARK {
            String::new()
        } else {
            format!(
                ", purge_at = CASE WHEN {} THEN purge_at ELSE {} END",
                mark_fits("purge_at", &moved),
                mark(&moved)
            )
        };
        let refreshed = format!(
            "last_active_at = :last_active, idle_deadline = {idle}, expires_at = {moved}{remark}"
        );
        // A row can be due only if its mark lies within a step of now; its own expiry
        // decides.
        let due = format!("purge_at <= {now} + {step}");
        let sql = |template: String| Statement::compile(&template, D::PLACEHOLDERS);
        Self {
            // The caller knows the key: a load reads the record's columns alone.
            load: sql(format!(
                "SELECT {} FROM {t} WHERE store_key = :key AND {live}",
                record_columns(D::USER_ID)
            )),
            insert: sql(format!(
                "INSERT INTO {t}{alias} (store_key, version, data, created_at, last_active_at,
                   idle_deadline, absolute_deadline, persistent, user_id, ip, user_agent,
                   auth_epoch, device_binding, expires_at, purge_at)
                 VALUES (:key, :version, :data, :created_at, :last_active, {idle}, {absolute},
                   :persistent, :user_id, :ip, :user_agent, :auth_epoch, :device_binding,
                   {expiry}, {}){upsert}",
                mark(&expiry)
            )),
            upsert: D::UPSERT,
            clear_expired: sql(format!(
                "DELETE FROM {t} WHERE store_key = :key AND NOT {live}"
            )),
            // The absolute deadline is fixed at insert: no update moves it.
            update: sql(format!(
                "UPDATE {t} SET version = version + 1, data = :data, {refreshed},
                   persistent = :persistent, user_id = :user_id, ip = :ip,
                   user_agent = :user_agent, auth_epoch = :auth_epoch,
                   device_binding = :device_binding
                 WHERE store_key = :key AND version = :expected AND {live}"
            )),
            is_live: sql(format!(
                "SELECT 1 FROM {t} WHERE store_key = :key AND {live}"
            )),
            touch: sql(format!(
                "UPDATE {t} SET {refreshed} WHERE store_key = :key AND {live}"
            )),
            rename: sql(format!(
                "UPDATE {t} SET store_key = :new_key WHERE store_key = :key AND {live}"
            )),
            delete: sql(format!("DELETE FROM {t} WHERE store_key = :key")),
            // A page of a user's sessions, in key order after `:after` (the empty string
            // before the first page): the user index is ordered by (user, key), so each
            // page reads only its own rows.
            list_for_user: sql(format!(
                "SELECT {cols} FROM {t} WHERE user_id = :user AND store_key > :after AND {live}
                 ORDER BY store_key LIMIT :limit"
            )),
            delete_for_user: sql(D::batch_of(t, &others_of_user)),
            has_for_user: sql(format!("SELECT 1 FROM {t} WHERE {others_of_user} LIMIT 1")),
            purge: sql(D::limited(
                &format!("DELETE FROM {t}"),
                t,
                &format!("{due} AND NOT {live}"),
            )),
            // A mark at or before its row's expiry (or short of never, for a row that
            // never expires) is stale. Only live rows are mended: the purge deletes the
            // others, and mending them first would write every expired row twice.
            mend_marks: sql(D::limited(
                &format!("UPDATE {t} SET purge_at = {}", mark("expires_at")),
                t,
                &format!("{due} AND {live} AND (expires_at IS NULL OR purge_at <= expires_at)"),
            )),
            find_by_handle: sql(format!(
                "SELECT {cols} FROM {t} WHERE store_key BETWEEN :low AND :high AND {live} LIMIT 1"
            )),
            list_sessions: sql(format!(
                "SELECT {cols} FROM {t} WHERE {live} AND (:user IS NULL OR user_id = :user)
                 AND (:after IS NULL OR store_key > :after) ORDER BY store_key LIMIT :limit"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_parameters_become_the_dialects_placeholders() {
        let template = "SELECT :key::BYTEA, :user, :key FROM t WHERE x = ':'";
        let dollar = Statement::compile(template, Placeholders::Dollar);
        assert_eq!(dollar.sql, "SELECT $1::BYTEA, $2, $1 FROM t WHERE x = ':'");
        assert_eq!(dollar.params, [Param::Key, Param::User]);
        let numbered = Statement::compile(template, Placeholders::NumberedQuestion);
        assert_eq!(
            numbered.sql,
            "SELECT ?1::BYTEA, ?2, ?1 FROM t WHERE x = ':'"
        );
        let question = Statement::compile(template, Placeholders::Question);
        assert_eq!(question.sql, "SELECT ?::BYTEA, ?, ? FROM t WHERE x = ':'");
        assert_eq!(question.params, [Param::Key, Param::User, Param::Key]);
    }

    #[test]
    fn a_missing_value_binds_null() {
        let statement = Statement::compile(":except :limit", Placeholders::Question);
        let bound = statement.bind(&Args::default());
        assert!(matches!(bound[..], [Bound::Bytes(None), Bound::Int(None)]));
    }
}
