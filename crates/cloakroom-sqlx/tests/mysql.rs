//! The MySQL/MariaDB store against the real MariaDB on this machine.

#[macro_use]
mod support;

use std::time::Duration;

use cloakroom_sqlx::MySqlStore;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool};
use support::{scenarios, Proxy, Tables};

sql_store_tests! {
    store: MySqlStore,
    pool: MySqlPool,
    options: MySqlConnectOptions,
    url: support::mysql_url,
    url_in: support::mysql_url_in,
    server: "MariaDB",
    upstream: "127.0.0.1:3306",
    unreachable: "mysql://root@127.0.0.1:1/test",
    bulk_insert: "INSERT INTO {table} (store_key, version, data, created_at, last_active_at, idle_deadline, expires_at, persistent)
                  SELECT UNHEX(SHA2(seq, 256)), 1, '{{}}', 0, 0, 1, 1, false FROM seq_1_to_200000",
    set_data: "UPDATE {table} SET data = ? WHERE ip = ?",
    marks: "SELECT expires_at, purge_at FROM {table} WHERE store_key = ?",
    make_stale: "UPDATE {table} SET purge_at = 0 WHERE store_key = ?",
    rename_row: "UPDATE {table} SET store_key = ? WHERE store_key = ?",
    create_namespace: "CREATE DATABASE {namespace}",
    drop_namespace: "DROP DATABASE {namespace}",
}

/// A table made by an older version keeps `user_id` in a PAD SPACE collation, where
/// "alice " equals "alice"; `migrate` converts it in place, keeping the rows.
#[tokio::test]
async fn migrate_converts_a_pad_space_user_column() {
    let Some((pool, tables, table)) = fresh_table().await else {
        return;
    };
    let old = store_on(&pool, &table).await;
    // Back to the column older versions made: PAD SPACE text.
    sqlx::query(&format!(
        "ALTER TABLE {table} MODIFY user_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let kept = cloakroom::SessionId::generate().store_key();
    // A row as that older version wrote it: the columns of its time only.
    let now = cloakroom::record::to_unix_ms(cloakroom::record::now());
    let hour = 3_600_000;
    sqlx::query(&format!(
        "INSERT INTO {table} (store_key, version, data, created_at, last_active_at,
           absolute_deadline, expires_at, persistent, user_id)
         VALUES (?, 1, '{{}}', ?, ?, ?, ?, false, 'zoë')"
    ))
    .bind(kept.as_bytes().as_slice())
    .bind(now)
    .bind(now)
    .bind(now + hour)
    .bind(now + hour)
    .execute(&pool)
    .await
    .unwrap();
    old.migrate().await.expect("migrate converts the column");
    old.migrate().await.expect("and is idempotent");
    let loaded = cloakroom::SessionStore::load(&old, &kept).await.unwrap();
    assert_eq!(
        loaded.unwrap().user_id.as_deref(),
        Some("zoë"),
        "rows survive"
    );
    scenarios::user_ids_compare_exactly(&old).await;
    drop_tables(&pool, &tables).await;
}

/// Another instance upgrading the table holds its named lock: `migrate` waits for it, for
/// as long as that takes, then finds the table up to date. (It used to wait 60 s and go on
/// without the lock, racing a long upgrade into "Duplicate column"; a test of that would
/// take a minute, so this one checks the waiting.)
#[tokio::test]
async fn migrate_waits_for_another_instance_s_upgrade() {
    let Some((pool, tables, table)) = fresh_table().await else {
        return;
    };
    let store = store_on(&pool, &table).await;
    let mut other = pool.acquire().await.unwrap();
    let lock = format!("cloakroom:{table}");
    let held: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
        .bind(&lock)
        .fetch_one(&mut *other)
        .await
        .unwrap();
    assert_eq!(held, Some(1));
    let migrating = tokio::spawn(async move { store.migrate().await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!migrating.is_finished(), "migrate waits for the lock");
    let _: Option<i64> = sqlx::query_scalar("SELECT RELEASE_LOCK(?)")
        .bind(&lock)
        .fetch_one(&mut *other)
        .await
        .unwrap();
    migrating.await.unwrap().expect("then migrates");
    drop(other);
    drop_tables(&pool, &tables).await;
}
