//! The admin commands, writing to any output so they can be tested directly.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use cloakroom::{
    ListQuery, Record, SessionEntry, SessionHandle, SessionStore, StoreError, StoreKey,
};
use serde::Serialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::table::{inert_json, truncate, write_table};

/// A command failure, with what to do.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The store failed.
    #[error("the session store failed: {0}. Check that it is reachable and try again")]
    Store(#[from] StoreError),
    /// No live session has this handle.
    #[error("no live session has handle {0}: list sessions with `cloakroom list`")]
    NotFound(String),
    /// The handle is not a handle.
    #[error(
        "{0:?} is not a session handle: handles are 16 characters, as `cloakroom list` shows them"
    )]
    BadHandle(String),
    /// Writing the output failed.
    #[error("could not write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// How to print.
#[derive(Clone, Copy, Debug, Default)]
pub struct Format {
    /// JSON instead of a table.
    pub json: bool,
    /// Include session data.
    pub show_data: bool,
}

fn rfc3339(at: Option<OffsetDateTime>) -> String {
    at.and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".to_owned())
}

/// A fixed-width UTC time for table cells.
fn cell_time(at: Option<OffsetDateTime>) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    at.and_then(|at| at.to_offset(time::UtcOffset::UTC).format(&format).ok())
        .unwrap_or_else(|| "-".to_owned())
}

fn entry_json(entry: &SessionEntry, format: Format) -> Value {
    let r = &entry.record;
    let mut value = json!({
        "handle": entry.handle(),
        "user": r.user_id,
        "created_at": rfc3339(Some(r.created_at)),
        "last_active_at": rfc3339(Some(r.last_active_at)),
        "expires_at": rfc3339(r.expires_at()),
        "idle_expires_at": rfc3339(r.idle_deadline),
        "absolute_expires_at": rfc3339(r.absolute_deadline),
        "persistent": r.persistent,
        "ip": r.client.ip,
        "device": device(r),
        "user_agent": r.client.user_agent,
        "keys": r.data.len(),
    });
    if format.show_data {
        value["data"] = Value::Object(r.data.clone());
    }
    value
}

/// The device as a person would name it ("Chrome 131 on Linux"); `-` when no user agent
/// was recorded.
fn device(record: &Record) -> String {
    match record.client.user_agent.as_deref() {
        Some(agent) => cloakroom::device::describe(agent),
        None => "-".to_owned(),
    }
}

fn parse_handle(text: &str) -> Result<SessionHandle, CommandError> {
    SessionHandle::parse(text).ok_or_else(|| CommandError::BadHandle(text.to_owned()))
}

/// The live session whose handle is `text`, for [`show`] and [`revoke`].
///
/// # Errors
///
/// [`CommandError::BadHandle`] if `text` is not a handle, [`CommandError::NotFound`] if no
/// live session has it, [`CommandError::Store`] if the store failed.
pub async fn find(store: &Arc<dyn SessionStore>, text: &str) -> Result<SessionEntry, CommandError> {
    store
        .find_by_handle(&parse_handle(text)?)
        .await?
        .ok_or_else(|| CommandError::NotFound(text.to_owned()))
}

/// The most sessions one `list_sessions` call asks for.
const PAGE: usize = 1000;

/// The store's live sessions (of one user, or all), a page at a time in key order: a
/// listing never holds a whole large store at once.
struct Pages<'a> {
    store: &'a Arc<dyn SessionStore>,
    user: Option<String>,
    after: Option<StoreKey>,
}

impl<'a> Pages<'a> {
    fn new(store: &'a Arc<dyn SessionStore>, user: Option<String>) -> Self {
        Self {
            store,
            user,
            after: None,
        }
    }

    /// The next page of at most `limit` sessions; `None` once they are all listed.
    async fn next(&mut self, limit: usize) -> Result<Option<Vec<SessionEntry>>, StoreError> {
        let page = self
            .store
            .list_sessions(&ListQuery {
                user: self.user.clone(),
                after: self.after,
                limit,
            })
            .await?;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        self.after = Some(last.key);
        Ok(Some(page))
    }
}

/// `list [--user U] [--limit N]`
pub async fn list(
    store: &Arc<dyn SessionStore>,
    user: Option<String>,
    limit: usize,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let mut entries = Vec::new();
    let mut pages = Pages::new(store, user);
    while entries.len() < limit {
        let Some(page) = pages.next((limit - entries.len()).min(PAGE)).await? else {
            break;
        };
        entries.extend(page);
    }
    if format.json {
        let list: Vec<Value> = entries.iter().map(|e| entry_json(e, format)).collect();
        return write_pretty(out, &list);
    }
    let mut headers = vec![
        "HANDLE",
        "USER",
        "CREATED",
        "LAST ACTIVE",
        "EXPIRES",
        "IP",
        "DEVICE",
    ];
    if format.show_data {
        headers.push("DATA");
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let r = &e.record;
            let mut row = vec![
                e.handle().to_string(),
                r.user_id.clone().unwrap_or_else(|| "-".into()),
                cell_time(Some(r.created_at)),
                cell_time(Some(r.last_active_at)),
                cell_time(r.expires_at()),
                r.client.ip.clone().unwrap_or_else(|| "-".into()),
                truncate(&device(r), 32),
            ];
            if format.show_data {
                row.push(truncate(&Value::Object(r.data.clone()).to_string(), 60));
            }
            row
        })
        .collect();
    write_table(out, &headers, &rows)?;
    writeln!(out, "{} session(s), times in UTC", rows.len())?;
    Ok(())
}

/// `show HANDLE`: the session [`find`] found, field by field. It reads no store, so what
/// it prints is exactly the entry given.
pub fn show(entry: &SessionEntry, format: Format, out: &mut dyn Write) -> Result<(), CommandError> {
    let mut value = entry_json(entry, format);
    // Only for sessions that have a binding, so the output for every other session (what
    // scripts parse) stays exactly as it was.
    let binding = entry.record.device_binding_state();
    if let Some(state) = &binding {
        value["device_binding"] = json!(state.to_string());
    }
    if format.json {
        return write_pretty(out, &value);
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let fields = [
        "handle",
        "user",
        "created_at",
        "last_active_at",
        "expires_at",
        "idle_expires_at",
        "absolute_expires_at",
        "persistent",
        "ip",
        "device",
        "user_agent",
        "keys",
    ];
    let mut rows: Vec<Vec<String>> = fields
        .iter()
        .map(|f| vec![(*f).to_owned(), text(&value[*f])])
        .collect();
    if let Some(state) = binding {
        rows.push(vec!["device_binding".to_owned(), state.to_string()]);
    }
    write_table(out, &["FIELD", "VALUE"], &rows)?;
    if format.show_data {
        writeln!(
            out,
            "data: {}",
            inert_json(&serde_json::to_string_pretty(&value["data"]).unwrap_or_default())
        )?;
    } else {
        writeln!(out, "(data hidden: add --show-data to print it)")?;
    }
    Ok(())
}

/// `revoke HANDLE`: deletes the session [`find`] found (a session that ended meanwhile
/// counts 0).
pub async fn revoke(
    store: &Arc<dyn SessionStore>,
    entry: &SessionEntry,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let revoked = u64::from(store.delete(&entry.key).await?);
    report_revoked(revoked, format, out)
}

/// `revoke --user U [--except HANDLE]`
pub async fn revoke_user(
    store: &Arc<dyn SessionStore>,
    user: &str,
    except: Option<&str>,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let except = match except {
        None => None,
        Some(text) => {
            let handle = parse_handle(text)?;
            let sessions = store.list_for_user(user).await?;
            let kept = sessions
                .iter()
                .find(|e| handle.matches(&e.key))
                .ok_or_else(|| CommandError::NotFound(text.to_owned()))?;
            Some(kept.key)
        }
    };
    let revoked = store.delete_for_user(user, except.as_ref()).await?;
    report_revoked(revoked, format, out)
}

/// Writes `document` as indented JSON: the `--json` output of the commands that print
/// one document rather than a line per event.
fn write_pretty(out: &mut dyn Write, document: &impl Serialize) -> Result<(), CommandError> {
    writeln!(
        out,
        "{}",
        inert_json(&serde_json::to_string_pretty(document).unwrap_or_default())
    )?;
    Ok(())
}

fn report_revoked(revoked: u64, format: Format, out: &mut dyn Write) -> Result<(), CommandError> {
    if format.json {
        writeln!(out, "{}", json!({ "revoked": revoked }))?;
    } else {
        writeln!(out, "revoked {revoked} session(s)")?;
    }
    Ok(())
}

/// `purge`, reporting each batch to `progress`.
pub async fn purge(
    store: &Arc<dyn SessionStore>,
    batch: usize,
    progress: &mut (dyn FnMut(u64) + Send),
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let purged = store.purge_expired_with_progress(batch, progress).await?;
    if format.json {
        writeln!(out, "{}", json!({ "purged": purged }))?;
    } else {
        writeln!(out, "purged {purged} expired session(s)")?;
    }
    Ok(())
}

/// Why `stats` cannot say how many sessions expired: printed beside the unknown counts.
pub const EXPIRED_UNKNOWN: &str = "no store keeps a record of expired sessions (Redis and \
Memcached drop them natively; the SQL, file and memory stores hide them and delete them at \
purge), so expirations in a window are unknown here; the server's \
cloakroom_sessions_expired_on_load_total metric counts those that requests meet";

/// What `stats` reports, from one pass over the store's live sessions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Live sessions.
    pub live: u64,
    /// Live sessions that expire within the hour.
    pub expiring_within_hour: u64,
    /// Live sessions created within the last hour.
    pub created_last_hour: u64,
    /// Live sessions created within the last day.
    pub created_last_day: u64,
    /// How many users have live sessions.
    pub users: usize,
    /// The users with the most live sessions, most first, at most `top`.
    pub top_users: Vec<(String, u64)>,
}

impl Stats {
    /// Counts the store's live sessions, in pages, as of now.
    ///
    /// Created counts come from each live session's creation time: a session created in
    /// the window and already gone (logged out, revoked, expired) is not among them. Every
    /// store answers this from the same listing `list` uses, which reads every live
    /// session: on a very large store it is a scan, never a request-path operation.
    pub async fn gather(store: &Arc<dyn SessionStore>, top: usize) -> Result<Self, StoreError> {
        let now = OffsetDateTime::now_utc();
        let soon = now + time::Duration::hours(1);
        let (hour_ago, day_ago) = (
            now - time::Duration::hours(1),
            now - time::Duration::days(1),
        );
        let mut stats = Self::default();
        let mut per_user: HashMap<String, u64> = HashMap::new();
        let mut pages = Pages::new(store, None);
        while let Some(page) = pages.next(PAGE).await? {
            for entry in &page {
                let record = &entry.record;
                stats.live += 1;
                stats.expiring_within_hour +=
                    u64::from(record.expires_at().is_some_and(|at| at <= soon));
                stats.created_last_hour += u64::from(record.created_at >= hour_ago);
                stats.created_last_day += u64::from(record.created_at >= day_ago);
                if let Some(user) = &record.user_id {
                    *per_user.entry(user.clone()).or_default() += 1;
                }
            }
        }
        let mut users: Vec<(String, u64)> = per_user.into_iter().collect();
        users.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        stats.users = users.len();
        users.truncate(top);
        stats.top_users = users;
        Ok(stats)
    }

    fn json(&self) -> Value {
        let top_users: Vec<Value> = self
            .top_users
            .iter()
            .map(|(u, n)| json!({ "user": u, "sessions": n }))
            .collect();
        json!({
            "live_sessions": self.live,
            "expiring_within_hour": self.expiring_within_hour,
            "created_last_hour": self.created_last_hour,
            "created_last_day": self.created_last_day,
            "expired_last_hour": null,
            "expired_last_day": null,
            "expired_unknown_because": EXPIRED_UNKNOWN,
            "users": self.users,
            "top_users": top_users,
        })
    }

    /// The figures as `(label, value)` rows, in table order.
    fn rows(&self) -> [(&'static str, Option<u64>); 7] {
        [
            ("live sessions", Some(self.live)),
            ("expiring within 1 hour", Some(self.expiring_within_hour)),
            ("created in the last hour", Some(self.created_last_hour)),
            ("created in the last day", Some(self.created_last_day)),
            ("expired in the last hour", None),
            ("expired in the last day", None),
            ("users with sessions", Some(self.users as u64)),
        ]
    }

    /// Writes the figures as tables; with `previous`, a column of changes since then.
    fn write_tables(
        &self,
        previous: Option<&Self>,
        out: &mut dyn Write,
    ) -> Result<(), CommandError> {
        let before = previous.map(Self::rows);
        let rows: Vec<Vec<String>> = self
            .rows()
            .iter()
            .enumerate()
            .map(|(i, (label, value))| {
                let mut row = vec![
                    (*label).to_owned(),
                    value.map_or_else(|| "unknown (see below)".to_owned(), |v| v.to_string()),
                ];
                if let Some(before) = &before {
                    row.push(match (value, before[i].1) {
                        (Some(now), Some(then)) if now != &then => {
                            format!("{:+}", i128::from(*now) - i128::from(then))
                        }
                        _ => String::new(),
                    });
                }
                row
            })
            .collect();
        let headers: &[&str] = if before.is_some() {
            &["STAT", "VALUE", "CHANGE"]
        } else {
            &["STAT", "VALUE"]
        };
        write_table(out, headers, &rows)?;
        writeln!(
            out,
            "(expired: stores keep no record of expired sessions; `--json` says why, and the \
             server's cloakroom_sessions_expired_on_load_total counts those requests meet)"
        )?;
        writeln!(out)?;
        let rows: Vec<Vec<String>> = self
            .top_users
            .iter()
            .map(|(u, n)| vec![u.clone(), n.to_string()])
            .collect();
        write_table(out, &["USER", "SESSIONS"], &rows)?;
        Ok(())
    }
}

/// `stats`
pub async fn stats(
    store: &Arc<dyn SessionStore>,
    top: usize,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let stats = Stats::gather(store, top).await?;
    if format.json {
        return write_pretty(out, &stats.json());
    }
    stats.write_tables(None, out)
}

/// How `watch` runs.
#[derive(Clone, Copy, Debug)]
pub struct Watch {
    /// Time between refreshes.
    pub interval: std::time::Duration,
    /// Stop after this many refreshes; `None` runs until interrupted.
    pub count: Option<u64>,
    /// Clear the screen before each refresh (on a terminal), like `top`; otherwise the
    /// refreshes follow one another.
    pub clear: bool,
}

/// `watch`: `stats` again every `interval`, with the change since the previous refresh.
/// With `--json`, one JSON object per line and refresh.
pub async fn watch(
    store: &Arc<dyn SessionStore>,
    top: usize,
    watch: Watch,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let mut previous: Option<Stats> = None;
    let mut refreshes = 0u64;
    loop {
        let stats = Stats::gather(store, top).await?;
        if format.json {
            writeln!(out, "{}", inert_json(&stats.json().to_string()))?;
        } else {
            if watch.clear {
                // Home the cursor and clear the screen.
                write!(out, "\x1b[H\x1b[2J")?;
            } else if previous.is_some() {
                writeln!(out)?;
            }
            let at = cell_time(Some(OffsetDateTime::now_utc()));
            writeln!(
                out,
                "cloakroom watch: every {}s, {at} UTC (Ctrl-C to stop)\n",
                watch.interval.as_secs_f64()
            )?;
            stats.write_tables(previous.as_ref(), out)?;
        }
        out.flush()?;
        refreshes += 1;
        if watch.count.is_some_and(|count| refreshes >= count) {
            return Ok(());
        }
        previous = Some(stats);
        tokio::time::sleep(watch.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use cloakroom::{MemoryStore, Record, SessionId};

    use super::*;

    /// What a client can put in a session: a user id from a sign-up form, data from a
    /// request body. serde_json writes DEL, the C1 controls and the bidirectional
    /// overrides as they are, so `--json` and `--show-data` sent a CSI (U+009B) or a
    /// right-to-left override straight to the operator's terminal.
    #[tokio::test]
    async fn json_and_data_output_cannot_drive_the_terminal() {
        let hostile = "eve\u{9b}2J\u{202e}\u{7f}";
        let mut record = Record::new(cloakroom::record::now(), None, None);
        record.user_id = Some(hostile.to_owned());
        record.data.insert("cart".into(), json!([hostile]));
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        let key = SessionId::generate().store_key();
        store.insert(&key, &record).await.unwrap();
        let entry = SessionEntry { key, record };
        let printed = |run: &dyn Fn(&mut Vec<u8>)| {
            let mut out = Vec::new();
            run(&mut out);
            String::from_utf8(out).unwrap()
        };
        let with_data = |json| Format {
            json,
            show_data: true,
        };
        let outputs = [
            printed(&|out| show(&entry, with_data(true), out).unwrap()),
            printed(&|out| show(&entry, with_data(false), out).unwrap()),
        ];
        let mut listed = Vec::new();
        list(&store, None, 10, with_data(true), &mut listed)
            .await
            .unwrap();
        let listed = String::from_utf8(listed).unwrap();
        for output in outputs.iter().chain([&listed]) {
            assert!(
                !output.contains(|c: char| c.is_control() && c != '\n' || c == '\u{202e}'),
                "{output:?}"
            );
        }
        let document: Value = serde_json::from_str(&listed).unwrap();
        assert_eq!(document[0]["user"], hostile, "the JSON still says the same");
        assert_eq!(document[0]["data"]["cart"][0], hostile);
    }
}
