//! A corrupt record at rest (a damaged file, a hand-edited row) is logged and treated as
//! absent: loading it gives `Corrupt` or nothing, and the per-user list, revoke and purge
//! skip or remove it rather than fail (DESIGN.md, failure policy). Found by the
//! `fs_record` fuzz target's reading of the file store. The checks are the conformance
//! suite's [`a_corrupt_record_is_skipped`], which the stores' own tests use too.

use cloakroom::conformance::a_corrupt_record_is_skipped;
use cloakroom::{Record, SessionId, SessionStore};

const USER: &str = "corrupt";

fn live_record() -> Record {
    cloakroom::conformance::live_record(Some(USER))
}

/// Failed before issue 12's fix (seen): `FileStore`'s `list_for_user`, `list_sessions`, `purge_expired`
/// and `delete_for_user` return `Corrupt` for the whole call (`Dir::read_live` uses `?`).
#[tokio::test]
async fn file_store_lists_revokes_and_purges_past_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = cloakroom_fs::FileStore::open(dir.path()).unwrap();
    let good = SessionId::generate().store_key();
    let bad = SessionId::generate().store_key();
    store.insert(&good, &live_record()).await.unwrap();
    store.insert(&bad, &live_record()).await.unwrap();
    std::fs::write(
        dir.path().join("sessions").join(bad.to_hex()),
        br#"{"data":{"cart":["ap"#,
    )
    .unwrap();
    a_corrupt_record_is_skipped(&store, USER, good, bad).await;
}

/// Failed before issue 12's fix (seen): `SqliteStore::list_for_user` returns `Corrupt` for the whole call
/// (the SQL stores share `record_from_row`, so PostgreSQL and MySQL likely do the same).
#[tokio::test]
async fn sqlite_lists_revokes_and_purges_past_a_corrupt_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = cloakroom_sqlx::SqliteStore::open(dir.path().join("s.db"))
        .await
        .unwrap();
    let good = SessionId::generate().store_key();
    let bad = SessionId::generate().store_key();
    store.insert(&good, &live_record()).await.unwrap();
    store.insert(&bad, &live_record()).await.unwrap();
    sqlx::query(&format!(
        "UPDATE {} SET data = 'not json' WHERE store_key = ?",
        store.table()
    ))
    .bind(bad.as_bytes().to_vec())
    .execute(store.pool())
    .await
    .unwrap();
    a_corrupt_record_is_skipped(&store, USER, good, bad).await;
}
