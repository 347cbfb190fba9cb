//! The SQLite store: the conformance suite, no raw IDs at rest, batched purge, and a purge
//! task that survives errors.

#[macro_use]
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use cloakroom::testing::{counter_app, request_once, NumberedStores, SuitePart, TestClient};
use cloakroom::{record, Record, SessionId, SessionStore};
use cloakroom_actix::testing::frameworks;
use cloakroom_sqlx::SqliteStore;
use support::scenarios;

async fn store_in(dir: &tempfile::TempDir, name: impl AsRef<Path>) -> SqliteStore {
    SqliteStore::open(dir.path().join(name))
        .await
        .expect("open sqlite")
}

/// `part` of the suite, each store in a database file of its own.
async fn in_files(part: SuitePart) {
    let dir = tempfile::tempdir().unwrap();
    let stores = NumberedStores::new(|n| store_in(&dir, format!("store-{n}.db")));
    stores.run(part, &frameworks()).await;
}

cloakroom::store_conformance_tests!(sqlite_store, in_files);

#[tokio::test]
async fn the_database_file_never_holds_a_raw_session_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir, "sessions.db").await;
    let app = counter_app(store.clone());
    let mut ids = Vec::new();
    for _ in 0..20 {
        let mut browser = TestClient::new(app.clone());
        browser.post("/set").await;
        ids.extend(browser.cookie().map(str::to_owned));
        let response = browser.post("/login").await;
        assert_eq!(response.status(), StatusCode::OK);
        ids.extend(browser.cookie().map(str::to_owned));
    }
    assert_eq!(ids.len(), 40, "every write and every login set a cookie");
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(bytes.len() > 4096, "the database files were read");
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    for id in &ids {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id)
            .unwrap();
        assert!(
            !contains(id.as_bytes()),
            "the cookie value is in the database"
        );
        assert!(!contains(&raw), "the raw ID bytes are in the database");
        let key = SessionId::parse(id).unwrap().store_key();
        let _ = key; // the key itself (SHA-256) is expected to be there for live sessions
    }
    let live = SessionId::parse(ids.last().unwrap()).unwrap().store_key();
    assert!(
        contains(live.as_bytes()),
        "sanity: the store key of a live session is in the file"
    );
}

fn expiring_record(ms: i64) -> Record {
    let t = record::now();
    Record::new(t, Some(t + time::Duration::milliseconds(ms)), None)
}

#[tokio::test]
async fn purge_deletes_in_batches_and_keeps_live_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir, "purge.db").await;
    for _ in 0..1050 {
        store
            .insert(&SessionId::generate().store_key(), &expiring_record(50))
            .await
            .unwrap();
    }
    let live = SessionId::generate().store_key();
    store
        .insert(&live, &expiring_record(600_000))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(store.purge_expired(100).await.unwrap(), 1050);
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM cloakroom_sessions")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1, "only the live row remains");
    assert!(store.load(&live).await.unwrap().is_some());
}

#[tokio::test]
async fn the_purge_task_survives_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir, "task.db").await;
    let shared: Arc<dyn SessionStore> = Arc::new(store.clone());
    sqlx::query("ALTER TABLE cloakroom_sessions RENAME TO hidden")
        .execute(store.pool())
        .await
        .unwrap();
    let task = cloakroom::spawn_purge_task(Arc::clone(&shared), Duration::from_millis(50), 10);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !task.is_finished(),
        "the task keeps running while purges fail"
    );
    sqlx::query("ALTER TABLE hidden RENAME TO cloakroom_sessions")
        .execute(store.pool())
        .await
        .unwrap();
    for _ in 0..30 {
        store
            .insert(&SessionId::generate().store_key(), &expiring_record(20))
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM cloakroom_sessions")
            .fetch_one(store.pool())
            .await
            .unwrap();
        if rows == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the task resumed purging after the error"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
}

#[tokio::test]
async fn a_corrupt_row_is_an_anonymous_request() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir, "corrupt.db").await;
    let id = SessionId::generate();
    store
        .insert(&id.store_key(), &expiring_record(600_000))
        .await
        .unwrap();
    sqlx::query("UPDATE cloakroom_sessions SET data = 'not json'")
        .execute(store.pool())
        .await
        .unwrap();
    assert!(
        matches!(store.load(&id.store_key()).await, Ok(None)),
        "a corrupt record loads as absent"
    );
    let app = counter_app(store);
    let response = request_once(&app, "GET", "/n", Some(&id.to_cookie_value())).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "a corrupt record is an anonymous session, not a 5xx"
    );
}

#[tokio::test]
async fn table_names_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir, "names.db").await;
    assert!(store
        .clone()
        .with_table_name("sessions; DROP TABLE x")
        .is_err());
    let custom = store.with_table_name("my_sessions").unwrap();
    custom.migrate().await.unwrap();
    custom.migrate().await.expect("migrate is idempotent");
    let key = SessionId::generate().store_key();
    custom.insert(&key, &expiring_record(60_000)).await.unwrap();
    assert!(custom.load(&key).await.unwrap().is_some());
}

#[tokio::test]
async fn user_ids_compare_exactly() {
    let dir = tempfile::tempdir().unwrap();
    scenarios::user_ids_compare_exactly(&store_in(&dir, "users.db").await).await;
}

#[tokio::test]
async fn lists_a_user_past_one_page() {
    let dir = tempfile::tempdir().unwrap();
    scenarios::lists_a_user_past_one_page(&store_in(&dir, "paged.db").await).await;
}

#[tokio::test]
async fn corrupt_rows_are_absent_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir, "corrupt-rows.db").await;
    let pool = store.pool().clone();
    scenarios::corrupt_rows_are_absent_and_skipped(&store, |tag, data| {
        let pool = pool.clone();
        async move {
            // "not json" is stored as bytes that are not text at all.
            let sql = if data == "not json" {
                "UPDATE cloakroom_sessions SET data = X'FFFE00' WHERE ip = ?2 AND ?1 IS NOT NULL"
            } else {
                "UPDATE cloakroom_sessions SET data = ?1 WHERE ip = ?2"
            };
            let done = sqlx::query(sql).bind(data).bind(tag).execute(&pool).await;
            done.unwrap().rows_affected()
        }
    })
    .await;
}

#[tokio::test]
async fn reserved_words_are_table_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir, "reserved.db").await;
    for name in ["user", "order", "Select"] {
        let store = store.clone().with_table_name(name).unwrap();
        scenarios::table_migrates_and_works(name, &store).await;
    }
}

#[tokio::test]
async fn a_custom_table_is_checked_first_and_created_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("only.db");
    let error = SqliteStore::open_with_table(&path, "no such; table")
        .await
        .unwrap_err();
    assert!(
        matches!(error, cloakroom_sqlx::SetupError::InvalidIdentifier(_)),
        "{error}"
    );
    assert!(
        !path.exists(),
        "a bad name is refused before the file is created"
    );
    let store = SqliteStore::open_with_table(&path, "user").await.unwrap();
    scenarios::table_works(&store).await;
    let (names,): (String,) =
        sqlx::query_as("SELECT group_concat(name, ',') FROM sqlite_master WHERE type = 'table'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(names, "user", "only the requested table exists");
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir, "private.db").await;
    store
        .insert(&SessionId::generate().store_key(), &expiring_record(60_000))
        .await
        .unwrap();
    let mut seen = 0;
    for suffix in ["", "-wal", "-shm"] {
        let path = dir.path().join(format!("private.db{suffix}"));
        if let Ok(meta) = std::fs::metadata(&path) {
            seen += 1;
            assert_eq!(
                meta.permissions().mode() & 0o777,
                0o600,
                "{} is readable only by its owner",
                path.display()
            );
        }
    }
    assert_eq!(
        seen, 3,
        "the database, its WAL and its shared-memory file were checked"
    );
}

/// `cargo test -p cloakroom-sqlx --test sqlite -- --ignored --nocapture per_user`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: 100,000 sessions of one user"]
async fn per_user_operations_at_100_000_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir, "scale.db").await;
    scenarios::per_user_scale(store, 100_000, "SQLite").await;
}

/// Found by the `sqlite_row` fuzz target: every connection to `:memory:` is a database of
/// its own, so an in-memory store whose pool opened several connections (or replaced one
/// after its idle timeout or lifetime) answered "no such table" and lost its sessions.
/// An in-memory store keeps one database, whichever operation runs on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_in_memory_store_is_one_database() {
    for url in ["sqlite::memory:", ":memory:"] {
        let store = SqliteStore::open(url).await.expect("open in memory");
        let keys: Vec<_> = (0..64).map(|_| SessionId::generate().store_key()).collect();
        // Concurrent operations make a pool open every connection it may.
        let inserts = keys.iter().map(|key| {
            let store = store.clone();
            let key = *key;
            tokio::spawn(async move {
                store
                    .insert(&key, &Record::new(record::now(), None, None))
                    .await
            })
        });
        for insert in inserts.collect::<Vec<_>>() {
            insert
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{url}: {e}"));
        }
        let loads = keys.iter().map(|key| {
            let store = store.clone();
            let key = *key;
            tokio::spawn(async move { store.load(&key).await })
        });
        for load in loads.collect::<Vec<_>>() {
            let loaded = load.await.unwrap().unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(loaded.is_some(), "{url}: a stored session is missing");
        }
    }
}

#[tokio::test]
async fn purge_marks_stay_put_and_stale_ones_are_mended() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir, "marks.db").await;
    let pool = store.pool().clone();
    scenarios::purge_marks(
        &store,
        |key| {
            let pool = pool.clone();
            async move {
                let sql =
                    "SELECT expires_at, purge_at FROM cloakroom_sessions WHERE store_key = ?1";
                sqlx::query_as(sql)
                    .bind(key)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        },
        |key| {
            let pool = pool.clone();
            async move {
                let sql = "UPDATE cloakroom_sessions SET purge_at = 0 WHERE store_key = ?1";
                let done = sqlx::query(sql).bind(key).execute(&pool).await;
                done.unwrap().rows_affected()
            }
        },
    )
    .await;
}

/// A table an earlier version made (no purge marks, the purge index on the expiry) is
/// upgraded in place: its rows keep their liveness, the purge takes the expired one, and
/// the marks of the others are mended (never-expiring rows get the "never" mark). The
/// earlier version's index stays for its purge.
#[tokio::test]
async fn a_table_from_before_purge_marks_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let old = sqlx::sqlite::SqlitePoolOptions::new()
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .unwrap();
    let now = record::to_unix_ms(record::now());
    let (live, expired, never) = (
        SessionId::generate().store_key(),
        SessionId::generate().store_key(),
        SessionId::generate().store_key(),
    );
    for statement in [
        "CREATE TABLE cloakroom_sessions (store_key BLOB PRIMARY KEY NOT NULL,
           version INTEGER NOT NULL, data TEXT NOT NULL, created_at INTEGER NOT NULL,
           last_active_at INTEGER NOT NULL, idle_deadline INTEGER, absolute_deadline INTEGER,
           expires_at INTEGER, persistent INTEGER NOT NULL, user_id TEXT, ip TEXT,
           user_agent TEXT, auth_epoch TEXT, device_binding TEXT) WITHOUT ROWID",
        "CREATE INDEX cloakroom_sessions_expires_at ON cloakroom_sessions (expires_at)
           WHERE expires_at IS NOT NULL",
    ] {
        sqlx::query(statement).execute(&old).await.unwrap();
    }
    for (key, deadline) in [
        (&live, Some(now + 3_600_000)),
        (&expired, Some(now - 1)),
        (&never, None),
    ] {
        sqlx::query(
            "INSERT INTO cloakroom_sessions (store_key, version, data, created_at,
               last_active_at, idle_deadline, expires_at, persistent)
             VALUES (?1, 1, '{}', ?2, ?2, ?3, ?3, 0)",
        )
        .bind(key.as_bytes().as_slice())
        .bind(now - 10)
        .bind(deadline)
        .execute(&old)
        .await
        .unwrap();
    }
    old.close().await;

    let store = store_in(&dir, "old.db").await;
    assert!(store.load(&live).await.unwrap().is_some());
    assert!(store.load(&never).await.unwrap().is_some());
    assert!(store.load(&expired).await.unwrap().is_none());
    assert_eq!(store.purge_expired(100).await.unwrap(), 1);
    let mark = |key: &cloakroom::StoreKey| {
        let sql = "SELECT purge_at FROM cloakroom_sessions WHERE store_key = ?1";
        sqlx::query_scalar::<_, i64>(sql)
            .bind(key.as_bytes().to_vec())
            .fetch_one(store.pool())
    };
    let step = 300_000;
    assert_eq!(
        mark(&live).await.unwrap(),
        (now + 3_600_000) / step * step + step
    );
    assert_eq!(mark(&never).await.unwrap(), i64::MAX);
    assert!(store.load(&live).await.unwrap().is_some());
    let (indexes,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index'
           AND name IN ('cloakroom_sessions_expires_at', 'cloakroom_sessions_purge_at')",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(indexes, 2, "the mark's index is made, the earlier one kept");
}

/// Renames racing "log out other devices", round after round: none survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoke_others_racing_renames_leaves_no_survivor() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir, "racing.db").await;
    cloakroom::conformance::revoke_others_racing_renames(Arc::new(store), 200).await;
}

/// Two processes (two pools) opening one file whose table an older version made: both
/// upgrade it, one after the other. Each looked for the missing columns and then added
/// them, apart, so the second could add a column the first had just added, and fail to
/// start with "duplicate column name".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_upgrading_one_file_both_start() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..20 {
        let path = dir.path().join(format!("old-{round}.db"));
        // In WAL mode, as every version made its files.
        let old = sqlx::sqlite::SqlitePoolOptions::new()
            .connect_with(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal),
            )
            .await
            .unwrap();
        // The table as the first versions made it: no epoch, binding or purge mark.
        sqlx::query(
            "CREATE TABLE cloakroom_sessions (store_key BLOB PRIMARY KEY NOT NULL,
               version INTEGER NOT NULL, data TEXT NOT NULL, created_at INTEGER NOT NULL,
               last_active_at INTEGER NOT NULL, idle_deadline INTEGER,
               absolute_deadline INTEGER, expires_at INTEGER, persistent INTEGER NOT NULL,
               user_id TEXT, ip TEXT, user_agent TEXT) WITHOUT ROWID",
        )
        .execute(&old)
        .await
        .unwrap();
        old.close().await;
        let (first, second) = tokio::join!(SqliteStore::open(&path), SqliteStore::open(&path));
        if let (Err(error), _) | (_, Err(error)) = (&first, &second) {
            panic!("round {round}: {error}");
        }
    }
}

/// Two processes (two app servers starting together) opening one new file: both start.
/// The first to turn on WAL journaling holds the file whole for a moment, and SQLite
/// answered the other "database is locked" at once, so it failed to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_opening_a_new_file_both_start() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..40 {
        let path = dir.path().join(format!("new-{round}.db"));
        let (first, second) = tokio::join!(SqliteStore::open(&path), SqliteStore::open(&path));
        if let (Err(error), _) | (_, Err(error)) = (&first, &second) {
            panic!("round {round}: {error}");
        }
    }
}
