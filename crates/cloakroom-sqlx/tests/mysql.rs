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
    server: "MariaDB",
    upstream: "127.0.0.1:3306",
    unreachable: "mysql://root@127.0.0.1:1/test",
    bulk_insert: "INSERT INTO {table} (store_key, version, data, created_at, last_active_at, idle_deadline, expires_at, persistent)
                  SELECT UNHEX(SHA2(seq, 256)), 1, '{{}}', 0, 0, 1, 1, false FROM seq_1_to_200000",
}
