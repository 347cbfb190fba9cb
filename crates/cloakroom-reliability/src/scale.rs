//! Adversarial scale: one user with many sessions, on any store a URL names. Times listing
//! them, revoking all but one ("log out other devices"), revoking all, and purging as many
//! expired sessions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloakroom::{Record, SessionId, SessionStore, StoreKey};
use serde::Serialize;

/// What one scale run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScaleReport {
    /// The store URL, password removed.
    pub store: String,
    /// Sessions of the one user.
    pub sessions: u64,
    /// Inserting them (32 at a time), seconds.
    pub insert_s: f64,
    /// `list_for_user`, seconds, and how many it returned.
    pub list_s: f64,
    /// Sessions listed.
    pub listed: u64,
    /// `delete_for_user` keeping one, seconds.
    pub revoke_others_s: f64,
    /// Sessions it revoked.
    pub revoked_others: u64,
    /// `delete_for_user` keeping none, seconds (after inserting them again).
    pub revoke_all_s: f64,
    /// Sessions it revoked.
    pub revoked_all: u64,
    /// `purge_expired` over as many expired sessions, seconds.
    pub purge_s: f64,
    /// Sessions it purged (0 where the backend expires natively).
    pub purged: u64,
    /// Operations that failed.
    pub errors: Vec<String>,
}

fn record(user: &str, lifetime: time::Duration) -> Record {
    let now = cloakroom::record::now();
    let mut record = Record::new(now, Some(now + lifetime), Some(now + lifetime));
    record.user_id = Some(user.to_owned());
    record
        .data
        .insert("device".into(), serde_json::Value::from("scale-test"));
    record
}

async fn insert_many(
    store: &Arc<dyn SessionStore>,
    user: &str,
    count: u64,
    lifetime: time::Duration,
) -> Result<Vec<StoreKey>, String> {
    let keys: Vec<StoreKey> = (0..count)
        .map(|_| SessionId::generate().store_key())
        .collect();
    for chunk in keys.chunks(32) {
        let mut tasks = Vec::new();
        for key in chunk {
            let (store, key, record) = (Arc::clone(store), *key, record(user, lifetime));
            tasks.push(tokio::spawn(
                async move { store.insert(&key, &record).await },
            ));
        }
        for task in tasks {
            task.await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(keys)
}

/// Runs the scale measurements with `sessions` sessions of one fresh user.
pub async fn run(name: &str, store: Arc<dyn SessionStore>, sessions: u64) -> ScaleReport {
    let mut report = ScaleReport {
        store: name.to_owned(),
        sessions,
        ..ScaleReport::default()
    };
    let tag = &SessionId::generate().store_key().to_hex()[..10];
    let user = format!("scale-{tag}");
    let day = time::Duration::days(1);
    let started = Instant::now();
    let keys = match insert_many(&store, &user, sessions, day).await {
        Ok(keys) => keys,
        Err(e) => {
            report.errors.push(format!("insert: {e}"));
            return report;
        }
    };
    report.insert_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    match store.list_for_user(&user).await {
        Ok(list) => report.listed = list.len() as u64,
        Err(e) => report.errors.push(format!("list: {e}")),
    }
    report.list_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    match store.delete_for_user(&user, keys.first()).await {
        Ok(n) => report.revoked_others = n,
        Err(e) => report.errors.push(format!("revoke others: {e}")),
    }
    report.revoke_others_s = started.elapsed().as_secs_f64();
    if let Err(e) = insert_many(&store, &user, sessions.saturating_sub(1), day).await {
        report.errors.push(format!("insert again: {e}"));
    }
    let started = Instant::now();
    match store.delete_for_user(&user, None).await {
        Ok(n) => report.revoked_all = n,
        Err(e) => report.errors.push(format!("revoke all: {e}")),
    }
    report.revoke_all_s = started.elapsed().as_secs_f64();
    // As many sessions that die in two seconds, then one purge.
    let purge_user = format!("scale-purge-{tag}");
    if let Err(e) = insert_many(&store, &purge_user, sessions, time::Duration::seconds(2)).await {
        report.errors.push(format!("insert expiring: {e}"));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let started = Instant::now();
    match store.purge_expired(1000).await {
        Ok(n) => report.purged = n,
        Err(e) => report.errors.push(format!("purge: {e}")),
    }
    report.purge_s = started.elapsed().as_secs_f64();
    report
}
