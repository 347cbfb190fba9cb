//! The PostgreSQL store against the real server on this machine.

#[macro_use]
mod support;

use std::time::Duration;

use cloakroom_sqlx::PostgresStore;
use sqlx::postgres::{PgConnectOptions, PgPool};
use support::{scenarios, Proxy, Tables};

sql_store_tests! {
    store: PostgresStore,
    pool: PgPool,
    options: PgConnectOptions,
    url: support::postgres_url,
    server: "PostgreSQL",
    upstream: "127.0.0.1:5432",
    unreachable: "postgres://postgres@127.0.0.1:1/test",
    bulk_insert: "INSERT INTO {table} (store_key, version, data, created_at, last_active_at, idle_deadline, expires_at, persistent)
                  SELECT sha256(i::text::bytea), 1, '{{}}', 0, 0, 1, 1, false FROM generate_series(1, 200000) AS i",
}
