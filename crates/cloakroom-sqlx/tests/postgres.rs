//! The PostgreSQL store against the real server on this machine.

#[macro_use]
mod support;

use std::time::Duration;

use cloakroom::SessionStore;
use cloakroom_sqlx::PostgresStore;
use sqlx::postgres::{PgConnectOptions, PgPool};
use support::{scenarios, Proxy, Tables};

sql_store_tests! {
    store: PostgresStore,
    pool: PgPool,
    options: PgConnectOptions,
    url: support::postgres_url,
    url_in: support::postgres_url_in,
    server: "PostgreSQL",
    upstream: "127.0.0.1:5432",
    unreachable: "postgres://postgres@127.0.0.1:1/test",
    bulk_insert: "INSERT INTO {table} (store_key, version, data, created_at, last_active_at, idle_deadline, expires_at, persistent)
                  SELECT sha256(i::text::bytea), 1, '{{}}', 0, 0, 1, 1, false FROM generate_series(1, 200000) AS i",
    set_data: "UPDATE {table} SET data = $1 WHERE ip = $2",
    marks: "SELECT expires_at, purge_at FROM {table} WHERE store_key = $1",
    make_stale: "UPDATE {table} SET purge_at = 0 WHERE store_key = $1",
    rename_row: "UPDATE {table} SET store_key = $1 WHERE store_key = $2",
    create_namespace: "CREATE SCHEMA {namespace}",
    drop_namespace: "DROP SCHEMA {namespace} CASCADE",
}

/// A write that moves a session's deadline within its purge mark's step changes no
/// indexed column, so PostgreSQL updates the row in place (HOT): no new entry in any
/// index, for every write. Before purge marks, the expiry index made every write a
/// non-HOT update.
#[tokio::test]
async fn writes_update_rows_in_place() {
    let url = support::postgres_url();
    let pool = match PostgresStore::pool_options()
        .max_connections(1)
        .connect(&url)
        .await
    {
        Ok(pool) => pool,
        Err(error) => return support::unreachable("PostgreSQL", &url, &error),
    };
    let tables = Tables::default();
    let table = tables.add();
    let store = PostgresStore::from_pool(pool.clone())
        .with_table(None, &table)
        .unwrap();
    store.migrate().await.unwrap();
    let key = cloakroom::SessionId::generate().store_key();
    let start = cloakroom::record::now();
    // A deadline a minute past a point of the marks' five-minute grid, an hour ahead, so
    // that no write below moves the mark.
    let step = scenarios::MARK_STEP_MS;
    let grid = (cloakroom::record::to_unix_ms(start) + 3_600_000) / step * step;
    let deadline =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(grid + 60_000) * 1_000_000)
            .unwrap();
    let mut record = cloakroom::Record::new(start, Some(deadline), None);
    store.insert(&key, &record).await.unwrap();
    // Few enough writes that every version fits the row's page without pruning, so the
    // count does not depend on other tests' snapshots.
    let writes = 30;
    for n in 1..=writes {
        record.data.insert("n".to_owned(), serde_json::json!(n));
        record.last_active_at = cloakroom::record::now();
        record.idle_deadline = Some(deadline + time::Duration::milliseconds(n));
        store.update(&key, &record).await.unwrap();
        record.version += 1;
    }
    // Each backend reports its counts to the statistics when idle, within seconds.
    let counts = "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = $1";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (updated, hot) = loop {
        let (updated, hot): (i64, i64) = sqlx::query_as(counts)
            .bind(&table)
            .fetch_one(&pool)
            .await
            .unwrap();
        if updated >= writes || std::time::Instant::now() > deadline {
            break (updated, hot);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(updated, writes, "every write was counted");
    assert_eq!(hot, writes, "every write updated its row in place");
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await
        .unwrap();
}

/// PostgreSQL cuts names longer than 63 bytes short, with only a notice. Index names were
/// the table's name (`schema_table` in a schema) plus a suffix, so a long table name gave
/// indexes whose cut names came out the same: migrating then dropped the user index
/// (prefixes of 57 to 61 bytes), or left the table with one index of two (62 and 63),
/// and a second long table in the schema could find "its" index already made on the first.
/// Nothing failed; per-user operations and the purge scanned the table instead.
#[tokio::test]
async fn long_table_names_keep_every_index() {
    let url = support::postgres_url();
    let pool = match PgPool::connect(&url).await {
        Ok(pool) => pool,
        Err(error) => return support::unreachable("PostgreSQL", &url, &error),
    };
    // Every table in a schema of the test's own, which is dropped with them: unqualified
    // names land in it through the search path.
    let schema = support::unique_table();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .unwrap();
    let inside = PgPool::connect(&support::postgres_url_in(&schema))
        .await
        .unwrap();
    let padded = |length: usize, last: char| {
        let mut name = format!("{}_", support::unique_table());
        name.extend(std::iter::repeat_n('x', length - name.len() - 1));
        name.push(last);
        name
    };
    let mut tables: Vec<(Option<&str>, String)> = [50, 54, 55, 56, 57, 60, 61, 62, 63]
        .into_iter()
        .map(|length| (None, padded(length, 'a')))
        .collect();
    // Qualified, the prefix is `schema_table`: past 63 bytes, two tables that differ
    // only at the end.
    tables.push((Some(&schema), padded(63, 'a')));
    tables.push((Some(&schema), padded(63, 'b')));
    // Names with capitals, which PostgreSQL folds: the indexes were named folded too.
    tables.push((None, format!("Mixed_{}", support::unique_table())));
    tables.push((None, format!("M{}", padded(60, 'a'))));
    for (in_schema, table) in &tables {
        let store = PostgresStore::from_pool(inside.clone())
            .with_table(*in_schema, table)
            .unwrap();
        store.migrate().await.unwrap();
        // The indexes an earlier version left, named as it named them (PostgreSQL cuts
        // them as it did then; a name that comes out taken is skipped, as it was then):
        // a second migration retires them and keeps its own.
        let prefix = match in_schema {
            Some(schema) => format!("{schema}_{table}"),
            None => table.clone(),
        };
        for (what, columns) in [
            ("purge_at", "purge_at"),
            ("user_key", "user_id, store_key"),
            // Before per-user listings were paged.
            ("user_id", "user_id"),
        ] {
            let name = format!("{prefix}_{what}").to_ascii_lowercase();
            sqlx::query(&format!(
                "CREATE INDEX IF NOT EXISTS \"{name}\" ON {table} ({columns})"
            ))
            .execute(&inside)
            .await
            .unwrap();
        }
        store.migrate().await.unwrap();
        let definitions: Vec<String> = sqlx::query_scalar(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = to_regclass($1)",
        )
        .bind(table)
        .fetch_all(&inside)
        .await
        .unwrap();
        let has = |columns: &str| {
            definitions
                .iter()
                .any(|definition| definition.contains(columns))
        };
        assert!(
            has("(store_key)") && has("(purge_at)") && has("(user_id, store_key)"),
            "{prefix} ({} bytes): {definitions:#?}",
            prefix.len()
        );
        assert_eq!(definitions.len(), 3, "{prefix}: {definitions:#?}");
    }
    inside.close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}

/// Opening a store on an up-to-date table takes no lock beyond reading it: `ALTER TABLE`
/// takes the table's strongest lock even when the column is there, so a start (or a
/// `cloakroom list`) waited behind any open transaction that had read the table, and every
/// session query queued behind it.
#[tokio::test]
async fn migrating_an_up_to_date_table_waits_for_no_reader() {
    let Some((pool, tables, table)) = fresh_table().await else {
        return;
    };
    let store = store_on(&pool, &table).await;
    let mut reader = pool.begin().await.unwrap();
    sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
        .execute(&mut *reader)
        .await
        .unwrap();
    let migrated = tokio::time::timeout(Duration::from_secs(3), store.migrate()).await;
    assert!(
        matches!(migrated, Ok(Ok(()))),
        "migrate waited for the open transaction"
    );
    reader.rollback().await.unwrap();
    drop_tables(&pool, &tables).await;
}

/// A write refused by a read-only server (a replica, or a primary demoted in a failover)
/// fails as unavailable, a passing state a retry gets past. Every database error was a
/// backend error, so metrics and logs blamed the store itself.
#[tokio::test]
async fn a_write_to_a_read_only_server_is_unavailable() {
    let Some((pool, tables, store)) = fresh_store().await else {
        return;
    };
    let read_only = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .after_connect(|connection, _| {
            Box::pin(async move {
                sqlx::Executor::execute(connection, "SET default_transaction_read_only = on")
                    .await
                    .map(drop)
            })
        })
        .connect(&support::postgres_url())
        .await
        .unwrap();
    let table = tables.names().into_iter().next().unwrap();
    let replica = PostgresStore::from_pool(read_only)
        .with_table(None, &table)
        .unwrap();
    let outcome = replica
        .insert(
            &cloakroom::SessionId::generate().store_key(),
            &cloakroom::conformance::live_record(None),
        )
        .await;
    assert!(
        matches!(
            outcome,
            Err(cloakroom::InsertError::Store(
                cloakroom::StoreError::Unavailable(_)
            ))
        ),
        "{outcome:?}"
    );
    drop(store);
    drop_tables(&pool, &tables).await;
}
