//! Every URL form the README documents opens the store it names, through the table.

use cloakroom::{record, ExpiryPolicy, SessionId};
use cloakroom_stores::{Backend, OpenError, SCHEMES};

/// A loud skip (a failure under `CLOAKROOM_REQUIRE_SERVICES=1`) for a server that is down.
fn skip(what: &str, error: &dyn std::fmt::Display) {
    cloakroom::testing::skip(&format!(
        "{what} is unreachable ({error}); start it with scripts/services.sh"
    ));
}

/// A record written through the backend reads back through it.
async fn round_trip(backend: &Backend) {
    let store = backend.shared();
    let key = SessionId::generate().store_key();
    store
        .insert(&key, &ExpiryPolicy::default().new_record(record::now()))
        .await
        .unwrap();
    assert!(store.load(&key).await.unwrap().is_some());
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn local_stores_open_with_their_schema_and_purge_needs() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("a.db").display());
    let file = format!("file://{}", dir.path().join("files").display());
    let cases = [
        ("memory://".to_owned(), false, false),
        ("MEMORY://".to_owned(), false, false),
        (sqlite.clone(), true, true),
        (format!("{sqlite}?table=other_sessions"), true, true),
        (file.clone(), true, true),
        ("cached+memory://".to_owned(), false, false),
        (format!("cached+{sqlite}"), true, true),
    ];
    for (url, has_schema, needs_purge_task) in cases {
        let backend = Backend::open(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(backend.migrate().await.unwrap(), has_schema, "{url}");
        assert_eq!(backend.needs_purge_task(), needs_purge_task, "{url}");
        round_trip(&backend).await;
    }
}

#[tokio::test]
async fn bad_urls_say_what_to_do() {
    let message = |error: OpenError| error.to_string();
    let unknown = message(Backend::open("carrier-pigeon://coop").await.unwrap_err());
    assert!(unknown.contains("unknown store URL scheme"), "{unknown}");
    for scheme in SCHEMES {
        assert!(unknown.contains(scheme.usage), "{unknown}");
    }
    for url in [
        "no-scheme-at-all",
        "cached+",
        "cached+nope://x",
        "nope+memory://",
    ] {
        assert!(
            matches!(
                Backend::open(url).await,
                Err(OpenError::UnknownScheme { .. })
            ),
            "{url}"
        );
    }
    assert!(message(Backend::open("sqlite://").await.unwrap_err()).contains("sqlite://sessions.db"));
    assert!(message(Backend::open("file://").await.unwrap_err()).contains("file://sessions"));
    assert!(message(Backend::open("sqlite://x.db?table=").await.unwrap_err()).contains("table="));
    // A parameter the scheme does not take is refused before anything is opened: it was
    // dropped, or for a file path taken as part of the file's name, so a typo opened
    // another store than the one meant.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    for (url, says) in [
        (
            format!("sqlite://{}?tabel=x", db.display()),
            "takes ?table=",
        ),
        (
            format!("sqlite://{}?mode=ro", db.display()),
            "takes ?table=",
        ),
        (
            format!("sqlite://{}?prefix=p:", db.display()),
            "no ?prefix=",
        ),
        ("memory://?table=t".to_owned(), "no ?table="),
        ("file://sessions?x=1".to_owned(), "takes none"),
        ("redis://127.0.0.1:1?table=t".to_owned(), "no ?table="),
        (
            "postgres://u@127.0.0.1:1/db?prefix=p".to_owned(),
            "no ?prefix=",
        ),
        (
            "memcached://127.0.0.1:1?timeout=5".to_owned(),
            "takes ?prefix=",
        ),
    ] {
        let error = Backend::open(&url).await.unwrap_err();
        assert!(
            matches!(&error, OpenError::Invalid { reason, .. } if reason.contains(says)),
            "{url}: {error}"
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file was made"
    );
    assert!(matches!(
        Backend::open("cookie://").await,
        Err(OpenError::ClientSide { .. })
    ));
}

#[tokio::test]
async fn server_aliases_open_the_same_stores() {
    let postgres = std::env::var("CLOAKROOM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mysql = std::env::var("CLOAKROOM_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let redis = std::env::var("CLOAKROOM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let table = format!("stores_alias_{}", std::process::id());
    let urls = [
        (postgres.clone(), "PostgreSQL"),
        (
            postgres.replacen("postgres://", "postgresql://", 1),
            "PostgreSQL",
        ),
        (mysql.clone(), "MariaDB"),
        (mysql.replacen("mysql://", "mariadb://", 1), "MariaDB"),
    ];
    for (url, what) in urls {
        let url = format!("{url}?table={table}");
        let backend = match Backend::open(&url).await {
            Ok(backend) => backend,
            Err(error) => {
                skip(what, &error);
                continue;
            }
        };
        assert!(backend.migrate().await.unwrap(), "{url}");
        assert!(backend.needs_purge_task(), "{url}");
        round_trip(&backend).await;
    }
    let drop_table = format!("DROP TABLE IF EXISTS {table}");
    if let Ok(pool) = sqlx::PgPool::connect(&postgres).await {
        sqlx::query(&drop_table).execute(&pool).await.unwrap();
    }
    if let Ok(pool) = sqlx::MySqlPool::connect(&mysql).await {
        sqlx::query(&drop_table).execute(&pool).await.unwrap();
    }
    match Backend::open(&format!("{redis}?prefix=stores{}:", std::process::id())).await {
        Ok(backend) => {
            assert!(!backend.migrate().await.unwrap());
            assert!(!backend.needs_purge_task());
            round_trip(&backend).await;
        }
        Err(error) => skip("Redis", &error),
    }
}

#[tokio::test]
async fn flask_urls_open_flask_sessions_layout_and_cookie() {
    // Flask's cookie: nothing on a server for the admin command, a manager for an app.
    assert!(matches!(
        Backend::open("flask-cookie://").await,
        Err(OpenError::ClientSide { .. })
    ));
    assert!(cloakroom_stores::open_client_side("memory://", Default::default()).is_none());
    std::env::set_var(cloakroom_stores::FLASK_SECRET_KEY, "a Flask SECRET_KEY");
    let manager = cloakroom_stores::open_client_side("flask-cookie://", Default::default())
        .expect("a client-side URL")
        .expect("opens with the key set");
    assert_eq!(
        manager.config().cookie.full_name(),
        "session",
        "Flask's cookie name"
    );
    assert!(manager.store().is_none());

    // Flask-Session in Redis: `session:` keys by default, or the prefix given.
    let redis = std::env::var("CLOAKROOM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let rest = redis.trim_start_matches("redis://");
    let prefix = format!("stores-flask{}:", std::process::id());
    match Backend::open(&format!("flask-redis://{rest}?prefix={prefix}")).await {
        Ok(backend) => {
            round_trip(&backend).await;
            assert!(!backend.needs_purge_task(), "Redis expires keys itself");
            let manager = backend.manager(Default::default()).unwrap();
            assert_eq!(manager.config().cookie.full_name(), "session");
        }
        Err(error) => skip("Redis", &error),
    }
}
