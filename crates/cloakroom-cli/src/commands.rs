//! The admin commands, writing to any output so they can be tested directly.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use cloakroom::{ListQuery, SessionEntry, SessionHandle, SessionStore, StoreError};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::table::{truncate, write_table};

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
        "user_agent": r.client.user_agent,
        "keys": r.data.len(),
    });
    if format.show_data {
        value["data"] = Value::Object(r.data.clone());
    }
    value
}

fn parse_handle(text: &str) -> Result<SessionHandle, CommandError> {
    SessionHandle::parse(text).ok_or_else(|| CommandError::BadHandle(text.to_owned()))
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
    let mut after = None;
    while entries.len() < limit {
        let page = store
            .list_sessions(&ListQuery {
                user: user.clone(),
                after,
                limit: (limit - entries.len()).min(1000),
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.key);
        entries.extend(page);
    }
    if format.json {
        let list: Vec<Value> = entries.iter().map(|e| entry_json(e, format)).collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        )?;
        return Ok(());
    }
    let mut headers = vec![
        "HANDLE",
        "USER",
        "CREATED",
        "LAST ACTIVE",
        "EXPIRES",
        "IP",
        "USER AGENT",
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
                truncate(r.client.user_agent.as_deref().unwrap_or("-"), 40),
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

/// `show HANDLE`
pub async fn show(
    store: &Arc<dyn SessionStore>,
    handle: &str,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let entry = store
        .find_by_handle(&parse_handle(handle)?)
        .await?
        .ok_or_else(|| CommandError::NotFound(handle.to_owned()))?;
    let value = entry_json(&entry, format);
    if format.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        )?;
        return Ok(());
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
        "user_agent",
        "keys",
    ];
    let rows: Vec<Vec<String>> = fields
        .iter()
        .map(|f| vec![(*f).to_owned(), text(&value[*f])])
        .collect();
    write_table(out, &["FIELD", "VALUE"], &rows)?;
    if format.show_data {
        writeln!(
            out,
            "data: {}",
            serde_json::to_string_pretty(&value["data"]).unwrap_or_default()
        )?;
    } else {
        writeln!(out, "(data hidden: add --show-data to print it)")?;
    }
    Ok(())
}

/// `revoke HANDLE`
pub async fn revoke(
    store: &Arc<dyn SessionStore>,
    handle: &str,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let entry = store
        .find_by_handle(&parse_handle(handle)?)
        .await?
        .ok_or_else(|| CommandError::NotFound(handle.to_owned()))?;
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

/// `stats`
pub async fn stats(
    store: &Arc<dyn SessionStore>,
    top: usize,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let soon = OffsetDateTime::now_utc() + time::Duration::hours(1);
    let (mut live, mut expiring) = (0u64, 0u64);
    let mut per_user: HashMap<String, u64> = HashMap::new();
    let mut after = None;
    loop {
        let page = store
            .list_sessions(&ListQuery {
                user: None,
                after,
                limit: 1000,
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.key);
        for entry in &page {
            live += 1;
            expiring += u64::from(entry.record.expires_at().is_some_and(|at| at <= soon));
            if let Some(user) = &entry.record.user_id {
                *per_user.entry(user.clone()).or_default() += 1;
            }
        }
    }
    let mut users: Vec<(String, u64)> = per_user.into_iter().collect();
    users.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let user_count = users.len();
    users.truncate(top);
    if format.json {
        let top_users: Vec<Value> = users
            .iter()
            .map(|(u, n)| json!({ "user": u, "sessions": n }))
            .collect();
        let value = json!({
            "live_sessions": live,
            "expiring_within_hour": expiring,
            "users": user_count,
            "top_users": top_users,
        });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        )?;
        return Ok(());
    }
    write_table(
        out,
        &["STAT", "VALUE"],
        &[
            vec!["live sessions".into(), live.to_string()],
            vec!["expiring within 1 hour".into(), expiring.to_string()],
            vec!["users with sessions".into(), user_count.to_string()],
        ],
    )?;
    writeln!(out)?;
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|(u, n)| vec![u.clone(), n.to_string()])
        .collect();
    write_table(out, &["USER", "SESSIONS"], &rows)?;
    Ok(())
}
