//! The `cloakroom` binary against real stores: SQLite, PostgreSQL and MariaDB.

use std::process::{Command, Output};
use std::sync::Arc;

use cloakroom::{record, ExpiryPolicy, Record, SessionId, SessionStore, StoreKey};
use cloakroom_stores::Backend;
use serde_json::{json, Value};

fn cloakroom(store: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("CLOAKROOM_STORE")
        .output()
        .expect("run cloakroom")
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "cloakroom failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn json_of(output: &Output) -> Value {
    serde_json::from_str(&ok(output)).expect("JSON output")
}

async fn seed(store: &Arc<dyn SessionStore>, user: Option<&str>, secret: &str) -> StoreKey {
    let mut record = ExpiryPolicy::default().new_record(record::now());
    record.user_id = user.map(str::to_owned);
    record.data.insert("secret".into(), json!(secret));
    record.client = cloakroom::ClientMeta::new(Some("192.0.2.7".into()), Some("TestAgent/1.0"));
    let key = SessionId::generate().store_key();
    store.insert(&key, &record).await.unwrap();
    key
}

/// `SCHEME://PATH`, PATH named `name` in a fresh directory, which lives as long as the
/// returned guard.
fn scratch_url(scheme: &str, name: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{scheme}://{}", dir.path().join(name).display());
    (dir, url)
}

/// Every command against a store in a fresh directory (see [`scratch_url`]).
async fn exercise_in_scratch(scheme: &str, name: &str) {
    let (_dir, url) = scratch_url(scheme, name);
    exercise(&url).await;
}

/// Every command against one store URL, seeded through the library.
async fn exercise(url: &str) {
    exercise_with(url, false).await;
}

async fn exercise_with(url: &str, native_expiry: bool) {
    // Seed and check through the durable store itself: a cache in this process would
    // (correctly) keep serving a session the CLI revoked until its TTL passes.
    let durable = url.strip_prefix("cached+").unwrap_or(url);
    let store = Backend::open(durable)
        .await
        .expect("open the store")
        .shared();
    let alice_1 = seed(&store, Some("alice"), "alice-one-secret").await;
    let alice_2 = seed(&store, Some("alice"), "alice-two-secret").await;
    let bob = seed(&store, Some("bob"), "bob-secret").await;
    seed(&store, None, "anonymous-secret").await;

    let migrated = ok(&cloakroom(url, &["migrate"]));
    let expected = if native_expiry {
        "this store has no schema"
    } else {
        "schema is ready"
    };
    assert!(migrated.contains(expected), "{migrated}");

    let list = json_of(&cloakroom(url, &["--json", "list"]));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert!(
        list.iter().all(|s| s.get("data").is_none()),
        "data is hidden by default"
    );
    let table = ok(&cloakroom(url, &["list"]));
    assert!(table.starts_with("HANDLE"), "{table}");
    assert!(table.contains(&alice_1.handle().to_string()) && table.contains("4 session(s)"));
    assert!(
        !table.contains("secret"),
        "no session data in the default table:\n{table}"
    );
    assert_eq!(
        json_of(&cloakroom(url, &["list", "--json", "--user", "alice"]))
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        json_of(&cloakroom(url, &["list", "--json", "--limit", "1"]))
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let with_data = ok(&cloakroom(url, &["list", "--json", "--show-data"]));
    assert!(with_data.contains("bob-secret"));

    let handle = bob.handle().to_string();
    let shown = ok(&cloakroom(url, &["show", &handle]));
    assert!(
        shown.contains("bob") && shown.contains("192.0.2.7") && shown.contains("TestAgent/1.0")
    );
    assert!(!shown.contains("bob-secret") && shown.contains("--show-data"));
    assert!(ok(&cloakroom(url, &["show", &handle, "--show-data"])).contains("bob-secret"));
    let shown = json_of(&cloakroom(url, &["show", &handle, "--json"]));
    assert_eq!(shown["user"], "bob");

    let stats = json_of(&cloakroom(url, &["stats", "--json"]));
    assert_eq!(stats["live_sessions"], 4);
    assert_eq!(stats["users"], 2);
    assert_eq!(
        stats["top_users"][0],
        json!({"user": "alice", "sessions": 2})
    );
    // Every seed was created just now; expirations cannot be known from live records.
    assert_eq!(stats["created_last_hour"], 4);
    assert_eq!(stats["created_last_day"], 4);
    assert_eq!(stats["expired_last_hour"], Value::Null);
    assert!(stats["expired_unknown_because"]
        .as_str()
        .unwrap()
        .contains("expired"));
    let table = ok(&cloakroom(url, &["stats"]));
    assert!(table.contains("live sessions") && table.contains("created in the last hour  4"));

    assert_eq!(
        json_of(&cloakroom(url, &["revoke", &handle, "--json"])),
        json!({"revoked": 1})
    );
    assert!(
        store.load(&bob).await.unwrap().is_none(),
        "revoke deleted the session"
    );
    let missing = cloakroom(url, &["show", &handle]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cloakroom list"),
        "the error says what to do"
    );
    let bad = cloakroom(url, &["revoke", "not-a-handle"]);
    assert!(
        !bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("16 characters")
    );

    let kept = alice_2.handle().to_string();
    assert!(ok(&cloakroom(
        url,
        &["revoke", "--user", "alice", "--except", &kept]
    ))
    .contains("revoked 1 session(s)"));
    assert!(store.load(&alice_1).await.unwrap().is_none());
    assert!(
        store.load(&alice_2).await.unwrap().is_some(),
        "--except keeps that session"
    );

    let t = record::now();
    for _ in 0..30 {
        let doomed = Record::new(t, Some(t + time::Duration::milliseconds(50)), None);
        store
            .insert(&SessionId::generate().store_key(), &doomed)
            .await
            .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    // Stores that expire natively have nothing left to purge.
    let purgeable = if native_expiry { 0 } else { 30 };
    assert_eq!(
        json_of(&cloakroom(url, &["purge", "--json", "--batch", "7"])),
        json!({ "purged": purgeable })
    );
    let stats = json_of(&cloakroom(url, &["stats", "--json"]));
    assert_eq!(
        stats["live_sessions"], 2,
        "expired sessions are gone either way"
    );
    assert!(ok(&cloakroom(url, &["purge"])).contains("purged 0 expired session(s)"));
}

#[tokio::test]
async fn every_command_on_sqlite() {
    exercise_in_scratch("sqlite", "cli.db").await;
}

/// `show` says whether a session is bound to a device key (DBSC), in the table and in
/// `--json`, and prints nothing new for a session without a binding.
#[tokio::test]
async fn show_says_whether_a_session_is_device_bound() {
    let (_dir, url) = scratch_url("sqlite", "bound.db");
    let store = Backend::open(&url).await.unwrap().shared();
    // The stored shape of `cloakroom::dbsc::binding::DeviceBinding` (the CLI reads it
    // without the dbsc feature).
    let bound = json!({"id": "b1", "state": "bound", "challenges": [],
        "key": {"alg": "ES256", "kty": "EC", "point": "BAAA", "thumbprint": "t"}});
    let pending = json!({"id": "p1", "state": "pending", "authorization": "a",
        "algorithms": ["ES256", "RS256"],
        "challenge": {"value": "c", "expires_at": 0}});
    let mut handles = Vec::new();
    for binding in [Some(bound), Some(pending), None] {
        let mut record = ExpiryPolicy::default().new_record(record::now());
        record.user_id = Some("alice".into());
        record.device_binding = binding.map(Box::new);
        let key = SessionId::generate().store_key();
        store.insert(&key, &record).await.unwrap();
        handles.push(key.handle().to_string());
    }

    let shown = ok(&cloakroom(&url, &["show", &handles[0]]));
    assert!(
        shown
            .lines()
            .any(|line| line.starts_with("device_binding")
                && line.trim_end().ends_with("bound (ES256)")),
        "{shown}"
    );
    let shown = json_of(&cloakroom(&url, &["show", &handles[0], "--json"]));
    assert_eq!(shown["device_binding"], "bound (ES256)");
    let shown = ok(&cloakroom(&url, &["show", &handles[1]]));
    assert!(
        shown
            .lines()
            .any(|line| line.starts_with("device_binding") && line.trim_end().ends_with("pending")),
        "{shown}"
    );
    let shown = json_of(&cloakroom(&url, &["show", &handles[1], "--json"]));
    assert_eq!(shown["device_binding"], "pending");
    // Unbound: no new line, no new field.
    let shown = ok(&cloakroom(&url, &["show", &handles[2]]));
    assert!(!shown.contains("device_binding"), "{shown}");
    let shown = json_of(&cloakroom(&url, &["show", &handles[2], "--json"]));
    assert!(shown.get("device_binding").is_none(), "{shown}");
}

/// `list` names devices as people do, keeping the raw user agent in `--json` and `show`;
/// `watch` refreshes the stats, with the change since the previous refresh.
#[tokio::test]
async fn devices_are_named_and_watch_refreshes() {
    let (_dir, url) = scratch_url("sqlite", "devices.db");
    let store = Backend::open(&url).await.unwrap().shared();
    let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                  Chrome/156.0.0.0 Safari/537.36";
    let mut record = ExpiryPolicy::default().new_record(record::now());
    record.user_id = Some("alice".into());
    record.client = cloakroom::ClientMeta::new(None, Some(chrome));
    let key = SessionId::generate().store_key();
    store.insert(&key, &record).await.unwrap();

    let table = ok(&cloakroom(&url, &["list"]));
    assert!(
        table.contains("DEVICE") && table.contains("Chrome 156 on Linux"),
        "{table}"
    );
    let listed = json_of(&cloakroom(&url, &["list", "--json"]));
    assert_eq!(listed[0]["device"], "Chrome 156 on Linux");
    assert_eq!(listed[0]["user_agent"], chrome);
    let shown = ok(&cloakroom(&url, &["show", &key.handle().to_string()]));
    assert!(shown.contains("Chrome 156 on Linux") && shown.contains("Chrome/156.0.0.0"));

    let watched = ok(&cloakroom(
        &url,
        &["watch", "--count", "2", "--interval", "0.1"],
    ));
    assert_eq!(
        watched.matches("cloakroom watch: every 0.1s").count(),
        2,
        "{watched}"
    );
    assert_eq!(watched.matches("live sessions").count(), 2);
    assert!(
        !watched.contains('\x1b'),
        "no screen clearing when not on a terminal"
    );
    let lines = ok(&cloakroom(
        &url,
        &["watch", "--count", "2", "--interval", "0.1", "--json"],
    ));
    let refreshes: Vec<Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(refreshes.len(), 2);
    assert!(refreshes.iter().all(|r| r["live_sessions"] == 1));
    let refused = cloakroom(&url, &["watch", "--interval", "0"]);
    assert!(!refused.status.success());
    // No refreshes at all is not a run: it is refused, where it printed one refresh.
    let none = cloakroom(&url, &["watch", "--count", "0"]);
    assert!(
        !none.status.success(),
        "{}",
        String::from_utf8_lossy(&none.stdout)
    );
    assert!(none.stdout.is_empty());
    assert!(String::from_utf8_lossy(&none.stderr).contains("--count"));
}

/// A loud skip (a failure under `CLOAKROOM_REQUIRE_SERVICES=1`) for a server that is down.
fn skip(what: &str, error: &dyn std::fmt::Display) {
    cloakroom::testing::skip(&format!(
        "{what} is unreachable ({error}); start it with scripts/services.sh"
    ));
}

/// A SQL server the CLI is tested on: its name, the variable that can give its URL, and
/// its URL on the test machine otherwise.
type SqlServer = (&'static str, &'static str, &'static str);

const POSTGRES: SqlServer = (
    "PostgreSQL",
    "CLOAKROOM_TEST_POSTGRES_URL",
    "postgres://postgres@127.0.0.1:5432/test",
);

const MARIADB: SqlServer = (
    "MariaDB",
    "CLOAKROOM_TEST_MYSQL_URL",
    "mysql://root@127.0.0.1:3306/test",
);

/// Every command on a SQL server's store, in a table of this test run's own, dropped after.
async fn every_command_on_sql<DB: sqlx::Database>((what, variable, default): SqlServer)
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let url = std::env::var(variable).unwrap_or_else(|_| default.into());
    let pool = match sqlx::Pool::<DB>::connect(&url).await {
        Ok(pool) => pool,
        Err(error) => return skip(what, &error),
    };
    let table = format!("cli_{}", std::process::id());
    exercise(&format!("{url}?table={table}")).await;
    sqlx::query::<DB>(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn every_command_on_postgres() {
    every_command_on_sql::<sqlx::Postgres>(POSTGRES).await;
}

#[tokio::test]
async fn every_command_on_mariadb() {
    every_command_on_sql::<sqlx::MySql>(MARIADB).await;
}

#[tokio::test]
async fn every_command_on_redis() {
    let url = std::env::var("CLOAKROOM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    if let Err(error) = cloakroom_redis::RedisStore::connect(&url).await {
        return skip("Redis", &error);
    }
    exercise_with(&format!("{url}?prefix=cli{}:", std::process::id()), true).await;
}

#[tokio::test]
async fn handles_that_start_with_a_dash_are_handles() {
    let (_dir, url) = scratch_url("sqlite", "dash.db");
    let store = Backend::open(&url).await.unwrap().shared();
    let mut record = ExpiryPolicy::default().new_record(record::now());
    record.user_id = Some("dash".into());
    // About one handle in 64 starts with '-' (base64url); draw until one does.
    let (dashed, kept) = loop {
        let key = SessionId::generate().store_key();
        if key.handle().to_string().starts_with('-') {
            break (key, SessionId::generate().store_key());
        }
    };
    store.insert(&dashed, &record).await.unwrap();
    store.insert(&kept, &record).await.unwrap();
    let handle = dashed.handle().to_string();
    assert!(ok(&cloakroom(&url, &["show", &handle])).contains("dash"));
    assert!(ok(&cloakroom(
        &url,
        &["revoke", "--user", "dash", "--except", &handle]
    ))
    .contains("revoked 1"));
    assert!(ok(&cloakroom(&url, &["revoke", &handle])).contains("revoked 1"));
    assert!(store.load(&dashed).await.unwrap().is_none());
}

#[test]
fn keygen_prints_a_key_the_key_ring_accepts() {
    let first = ok(&cloakroom("memory://", &["keygen"]));
    let second = ok(&cloakroom("memory://", &["keygen"]));
    assert_ne!(first, second);
    let ring = cloakroom::KeyRing::parse(first.trim()).expect("a valid key");
    assert_eq!(ring.len(), 1);
}

#[tokio::test]
async fn every_command_on_memcached() {
    let Some(server) = cloakroom_memcached::testing::start().await else {
        return;
    };
    exercise_with(&format!("memcached://{}", server.address()), true).await;
}

#[tokio::test]
async fn every_command_on_files() {
    exercise_in_scratch("file", "sessions").await;
}

#[tokio::test]
async fn every_command_through_a_cache() {
    exercise_in_scratch("cached+sqlite", "cached.db").await;
}

#[test]
fn errors_say_what_to_do() {
    let unknown = cloakroom("carrier-pigeon://coop", &["list"]);
    assert!(!unknown.status.success());
    let message = String::from_utf8_lossy(&unknown.stderr);
    // That it lists every scheme is checked by help_and_errors_list_every_scheme_in_the_table.
    assert!(message.contains("unknown store URL scheme"), "{message}");

    let down = cloakroom("postgres://postgres:hunter2@127.0.0.1:1/test", &["list"]);
    assert!(!down.status.success());
    let message = String::from_utf8_lossy(&down.stderr);
    assert!(
        message.contains("check the URL and that the server is running"),
        "{message}"
    );
    assert!(
        !message.contains("hunter2"),
        "passwords are never printed: {message}"
    );
}

/// Output of a run, both streams, for checks that nothing secret is printed.
fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn secrets_in_store_urls_are_never_printed() {
    // Each URL names an unreachable server or an unknown scheme, so opening it fails and the
    // error names the URL; the secret must not be in what is printed.
    let urls = [
        "postgres://postgres:pw-userinfo@127.0.0.1:1/test",
        "postgres://postgres@127.0.0.1:1/test?password=pw-query",
        "postgres://postgres@127.0.0.1:1/test?sslmode=disable&PassWord=pw-query-case",
        "postgres://postgres@127.0.0.1:1/test?p%61ssword=pw-query-encoded",
        "postgres://postgres:pw-with/slash@127.0.0.1:1/test",
        "postgres://postgres:pw-with?question@127.0.0.1:1/test",
        "mysql://root:pw-mysql@127.0.0.1:1/test?table=t",
        "mariadb://root@127.0.0.1:1/test?password=pw-mariadb",
        "redis://:pw-redis@127.0.0.1:1/0",
        "redis://default:pw-redis-user@127.0.0.1:1/0?prefix=x:",
        "redis-cluster://:pw-cluster@127.0.0.1:1,:pw-cluster@127.0.0.1:2",
        "cached+postgres://postgres:pw-cached@127.0.0.1:1/test",
        "nats://user:pw-unknown@127.0.0.1:1?token=pw-token",
    ];
    for url in urls {
        let output = cloakroom(url, &["list"]);
        assert!(!output.status.success(), "{url} opened?");
        let text = printed(&output);
        assert!(
            !text.contains("pw-"),
            "a secret of {url} was printed:\n{text}"
        );
        assert!(text.contains("***"), "the URL is shown redacted:\n{text}");
    }

    // clap shows environment values in --help unless told not to.
    let help = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .arg("--help")
        .env(
            "CLOAKROOM_STORE",
            "postgres://postgres:pw-env@127.0.0.1:1/test",
        )
        .output()
        .expect("run cloakroom --help");
    let text = printed(&help);
    assert!(help.status.success() && text.contains("--store"), "{text}");
    assert!(
        !text.contains("pw-env"),
        "--help printed the secret:\n{text}"
    );
}

#[test]
fn help_and_errors_list_every_scheme_in_the_table() {
    let help = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .arg("--help")
        .output()
        .expect("run cloakroom --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let unknown = printed(&cloakroom("carrier-pigeon://coop", &["list"]));
    for scheme in cloakroom_stores::SCHEMES {
        assert!(
            help.contains(scheme.usage),
            "{} not in --help:\n{help}",
            scheme.usage
        );
        assert!(
            unknown.contains(scheme.usage),
            "{} not in the error:\n{unknown}",
            scheme.usage
        );
    }
}
