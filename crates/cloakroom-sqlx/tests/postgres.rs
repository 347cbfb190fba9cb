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
    url_in: support::postgres_url_in,
    server: "PostgreSQL",
    upstream: "127.0.0.1:5432",
    unreachable: "postgres://postgres@127.0.0.1:1/test",
    bulk_insert: "INSERT INTO {table} (store_key, version, data, created_at, last_active_at, idle_deadline, expires_at, persistent)
                  SELECT sha256(i::text::bytea), 1, '{{}}', 0, 0, 1, 1, false FROM generate_series(1, 200000) AS i",
    set_data: "UPDATE {table} SET data = $1 WHERE ip = $2",
    create_namespace: "CREATE SCHEMA {namespace}",
    drop_namespace: "DROP SCHEMA {namespace} CASCADE",
}
