//! The SQL stores' at-rest decoding, through the real SQLite store: a row whose every
//! column the fuzzer chooses (any SQLite storage class, as a damaged or hand-edited
//! database can hold), then every reading operation runs.
//!
//! Checked: never a panic, never a hang; reading operations end in `Ok` or a typed error.
#![no_main]

use std::sync::OnceLock;

use cloakroom::{ListQuery, SessionId, SessionStore, StoreKey};
use cloakroom_sqlx::SqliteStore;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sqlx::sqlite::SqlitePoolOptions;

#[derive(Arbitrary, Debug)]
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Row {
    version: Cell,
    data: Cell,
    created_at: Cell,
    last_active_at: Cell,
    idle_deadline: Cell,
    absolute_deadline: Cell,
    expires_at: Cell,
    persistent: Cell,
    user_id: Cell,
    ip: Cell,
    user_agent: Cell,
    auth_epoch: Cell,
}

const USER: &str = "fuzz";

fn fixture() -> &'static (SqliteStore, StoreKey) {
    static FIXTURE: OnceLock<(SqliteStore, StoreKey)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        cloakroom_fuzz::runtime().block_on(async {
            // One connection, never recycled: every connection to `:memory:` is a database of
            // its own (a recycled one, after 30 minutes, had no table).
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect("sqlite::memory:")
                .await
                .unwrap();
            let store = SqliteStore::from_pool(pool);
            store.migrate().await.unwrap();
            (store, SessionId::generate().store_key())
        })
    })
}

fn bind<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    cell: &'q Cell,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    match cell {
        Cell::Null => query.bind(None::<i64>),
        Cell::Int(v) => query.bind(*v),
        Cell::Real(v) => query.bind(*v),
        // The user column holds the fuzzed text or the indexed user, so lists see the row.
        Cell::Text(v) => query.bind(v.as_str()),
        Cell::Blob(v) => query.bind(v.as_slice()),
    }
}

fuzz_target!(|row: Row| {
    let (store, key) = fixture();
    cloakroom_fuzz::runtime().block_on(async {
        let table = store.table();
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(store.pool())
            .await
            .unwrap();
        let sql = format!(
            "INSERT INTO {table} (store_key, version, data, created_at, last_active_at, \
             idle_deadline, absolute_deadline, expires_at, persistent, user_id, ip, \
             user_agent, auth_epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        let bytes = key.as_bytes().to_vec();
        let mut query = sqlx::query(&sql).bind(bytes);
        for cell in [
            &row.version,
            &row.data,
            &row.created_at,
            &row.last_active_at,
            &row.idle_deadline,
            &row.absolute_deadline,
            &row.expires_at,
            &row.persistent,
        ] {
            query = bind(query, cell);
        }
        let user = Cell::Text(USER.into());
        let user_cell = match &row.user_id {
            Cell::Null => &user,
            other => other,
        };
        for cell in [user_cell, &row.ip, &row.user_agent, &row.auth_epoch] {
            query = bind(query, cell);
        }
        if query.execute(store.pool()).await.is_err() {
            // A NOT NULL column given NULL: SQLite refuses the row itself.
            return;
        }
        let _ = store.load(key).await;
        let _ = store.find_by_handle(&key.handle()).await;
        let _ = store.list_for_user(USER).await;
        let query = ListQuery {
            limit: 10,
            ..ListQuery::default()
        };
        let _ = store.list_sessions(&query).await;
        let _ = store.purge_expired(16).await;
        let _ = store.delete_for_user(USER, None).await;
    });
});
