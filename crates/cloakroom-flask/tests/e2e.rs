//! End to end: the real Flask (3.1) and Flask-Session (0.8) app of tests/flask_app beside a
//! cloakroom app on loopback, one browser-like cookie jar going back and forth.
//!
//! Needs the venv of scripts/flask.sh (and Redis for the Flask-Session mode); without them
//! the tests skip loudly, unless CLOAKROOM_REQUIRE_SERVICES=1, where they fail.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Query;
use axum::routing::{get, post};
use axum::{Json, Router};
use cloakroom::testing::skip;
use cloakroom::{Session, SessionConfig, SessionError, SessionLayer, SessionManager};
use cloakroom_flask::{FlaskCookie, FlaskSessionIds};
use serde_json::{json, Value};
use support::{redis_url, unique_prefix};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "e2e-current-key-9f8e7d6c5b4a";
const OLD_KEY: &str = "e2e-retired-key-1a2b3c4d5e6f";
const LIFETIME: u64 = 3600;

fn venv_python() -> Option<PathBuf> {
    let venv = std::env::var_os("CLOAKROOM_FLASK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.flask-venv"));
    let python = venv.join("bin/python");
    python.exists().then_some(python)
}

/// The Flask app, killed when dropped.
struct Flask {
    child: tokio::process::Child,
    addr: SocketAddr,
}

impl Flask {
    async fn start(python: &PathBuf, env: &[(&str, String)]) -> Self {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let app = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/flask_app/app.py");
        let mut command = tokio::process::Command::new(python);
        command
            .arg(app)
            .env("PORT", port.to_string())
            .env("SECRET_KEY", KEY)
            .env("LIFETIME", LIFETIME.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("start the Flask app");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        for _ in 0..200 {
            if TcpStream::connect(addr).await.is_ok() {
                return Self { child, addr };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the Flask app did not start on {addr}");
    }
}

impl Drop for Flask {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The cloakroom side: the same endpoints as the Flask app, on the same session.
async fn serve_cloakroom(manager: SessionManager) -> SocketAddr {
    async fn me(session: Session) -> Result<Json<Value>, SessionError> {
        Ok(Json(json!({
            "user": session.user().await?,
            "cart": session.get::<Value>("cart").await?,
            "counter": session.get::<Value>("counter").await?,
        })))
    }
    async fn counter(session: Session) -> Result<Json<Value>, SessionError> {
        session
            .update("counter", |n: Option<u64>| n.unwrap_or(0) + 1)
            .await?;
        me(session).await
    }
    async fn login(
        session: Session,
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> Result<Json<Value>, SessionError> {
        session.login(&q["user"]).await?;
        session.set_persistent(true).await?;
        me(session).await
    }
    async fn logout(session: Session) -> Result<Json<Value>, SessionError> {
        session.logout().await?;
        Ok(Json(json!({"user": null, "cart": null, "counter": null})))
    }
    let app = Router::new()
        .route("/me", get(me))
        .route("/counter", post(counter))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .layer(SessionLayer::from_manager(Arc::new(manager)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A browser's cookie jar for the one `session` cookie both apps use.
#[derive(Default)]
struct Browser {
    cookie: Option<String>,
}

impl Browser {
    async fn send(&mut self, method: &str, addr: SocketAddr, path: &str) -> Value {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let cookie = self
            .cookie
            .as_ref()
            .map(|value| format!("Cookie: session={value}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8(response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "{method} {addr}{path}: {head}"
        );
        for line in head.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if !name.eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            let pair = value.trim().split(';').next().unwrap_or_default();
            if let Some(value) = pair.strip_prefix("session=") {
                let value = value.trim_matches('"');
                self.cookie = (!value.is_empty()).then(|| value.to_owned());
            }
        }
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"))
    }

    async fn user(&mut self, addr: SocketAddr) -> Value {
        self.send("GET", addr, "/me").await["user"].clone()
    }
}

/// Both apps see `expected` as the user for the browser's cookie as it is now.
async fn both_see(
    browser: &mut Browser,
    flask: SocketAddr,
    rust: SocketAddr,
    expected: Value,
    what: &str,
) {
    let cookie = browser.cookie.clone();
    assert_eq!(browser.user(flask).await, expected, "Flask, {what}");
    browser.cookie = cookie;
    assert_eq!(browser.user(rust).await, expected, "cloakroom, {what}");
}

/// What both modes must show: sessions cross over both ways, and bad cookies are refused
/// by both apps alike. `forge` makes the bad cookies from the current one.
async fn shared_sessions(
    flask: SocketAddr,
    rust: SocketAddr,
    forge: impl Fn(&str, Forgery) -> String,
    expire: impl Fn(String) -> Pending,
) {
    let mut browser = Browser::default();
    // Log in on Flask: cloakroom sees the user and the data.
    browser.send("POST", flask, "/login?user=alice").await;
    let me = browser.send("GET", rust, "/me").await;
    assert_eq!(
        me,
        json!({"user": "alice", "cart": ["apple"], "counter": null})
    );
    // Write in cloakroom: Flask reads it, and the other way round.
    assert_eq!(
        browser.send("POST", rust, "/counter").await["counter"],
        json!(1)
    );
    assert_eq!(
        browser.send("GET", flask, "/me").await,
        json!({"user": "alice", "cart": ["apple"], "counter": 1})
    );
    assert_eq!(
        browser.send("POST", flask, "/counter").await["counter"],
        json!(2)
    );
    assert_eq!(browser.send("GET", rust, "/me").await["counter"], json!(2));

    // Bad cookies: both refuse them alike.
    let good = browser.cookie.clone().unwrap();
    for forgery in [Forgery::Tampered, Forgery::UnknownKey, Forgery::Expired] {
        browser.cookie = Some(forge(&good, forgery));
        both_see(
            &mut browser,
            flask,
            rust,
            Value::Null,
            &format!("{forgery:?} cookie"),
        )
        .await;
    }
    browser.cookie = Some(good.clone());
    both_see(
        &mut browser,
        flask,
        rust,
        json!("alice"),
        "the good cookie again",
    )
    .await;

    // Log out on Flask: cloakroom sees it.
    browser.send("POST", flask, "/logout").await;
    assert_eq!(browser.cookie, None, "Flask removed the cookie");
    assert_eq!(browser.user(rust).await, Value::Null);

    // Log in on cloakroom (a new ID): Flask sees the user; log out there: Flask sees it.
    browser.send("POST", rust, "/login?user=bob").await;
    assert_eq!(browser.user(flask).await, json!("bob"));
    browser.send("POST", rust, "/logout").await;
    assert_eq!(browser.cookie, None, "cloakroom removed the cookie");
    assert_eq!(browser.user(flask).await, Value::Null);

    // An expired session, found so by both.
    browser.send("POST", flask, "/login?user=carol").await;
    let cookie = browser.cookie.clone().unwrap();
    browser.cookie = Some(expire(cookie).await);
    both_see(&mut browser, flask, rust, Value::Null, "expired").await;
}

/// Expires the session of a cookie, giving the cookie the browser then holds.
type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>;

#[derive(Clone, Copy, Debug)]
enum Forgery {
    Tampered,
    UnknownKey,
    Expired,
}

/// Changes the first character of the signature.
fn tamper(value: &str) -> String {
    let (head, signature) = value.rsplit_once('.').unwrap();
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    format!("{head}.{first}{}", &signature[1..])
}

#[tokio::test(flavor = "multi_thread")]
async fn flask_cookie_sessions_are_shared_both_ways() {
    let Some(python) = venv_python() else {
        return skip("no Flask venv: run scripts/flask.sh");
    };
    let flask = Flask::start(
        &python,
        &[
            ("FLASK_MODE", "cookie".into()),
            ("SECRET_KEY_FALLBACKS", OLD_KEY.into()),
        ],
    )
    .await;
    let codec = FlaskCookie::new(KEY)
        .with_fallbacks([OLD_KEY])
        .with_lifetime(Duration::from_secs(LIFETIME));
    let config = codec.session_config(SessionConfig::default());
    let manager = SessionManager::cookie_codec(Arc::new(codec.clone()), config).unwrap();
    let rust = serve_cloakroom(manager).await;

    let forge = |good: &str, forgery: Forgery| -> String {
        let now = cloakroom::record::now();
        let (session, ..) = codec.decode_at(good, now).unwrap();
        match forgery {
            Forgery::Tampered => tamper(good),
            Forgery::UnknownKey => FlaskCookie::new("a key neither app has")
                .encode_at(&session, now)
                .unwrap(),
            Forgery::Expired => codec
                .encode_at(&session, now - Duration::from_secs(LIFETIME + 5))
                .unwrap(),
        }
    };
    // A cookie cannot be expired in place: the browser gets one dated a lifetime ago.
    let expire = |cookie: String| -> Pending {
        let expired = forge(&cookie, Forgery::Expired);
        Box::pin(async move { expired })
    };
    shared_sessions(flask.addr, rust, forge, expire).await;

    // The expired check above used the jar's own cookie; replace it by an old one to
    // check expiry end to end, and a cookie under the retired key is still accepted.
    let mut browser = Browser::default();
    browser.send("POST", flask.addr, "/login?user=dave").await;
    let good = browser.cookie.clone().unwrap();
    browser.cookie = Some(forge(&good, Forgery::Expired));
    both_see(
        &mut browser,
        flask.addr,
        rust,
        Value::Null,
        "dated a lifetime ago",
    )
    .await;
    let (session, ..) = codec.decode_at(&good, cloakroom::record::now()).unwrap();
    browser.cookie = Some(
        FlaskCookie::new(OLD_KEY)
            .encode_at(&session, cloakroom::record::now())
            .unwrap(),
    );
    both_see(
        &mut browser,
        flask.addr,
        rust,
        json!("dave"),
        "signed with a fallback key",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn flask_session_redis_sessions_are_shared_both_ways() {
    let Some(python) = venv_python() else {
        return skip("no Flask venv: run scripts/flask.sh");
    };
    let Some(store) = support::connect().await else {
        return;
    };
    let prefix = unique_prefix();
    // The index under the test's prefix too, so the clean-up below removes it.
    let store = store
        .with_prefix(&prefix)
        .with_index_prefix(format!("{prefix}~user:"))
        .with_lifetime(Duration::from_secs(LIFETIME));
    let flask = Flask::start(
        &python,
        &[
            ("FLASK_MODE", "redis".into()),
            ("REDIS_URL", redis_url()),
            ("SESSION_KEY_PREFIX", prefix.clone()),
            ("SESSION_USE_SIGNER", "1".into()),
        ],
    )
    .await;
    let config = store.session_config(SessionConfig::default());
    let manager = SessionManager::new(store, config)
        .unwrap()
        .with_id_format(Arc::new(FlaskSessionIds::signed(KEY)));
    let rust = serve_cloakroom(manager).await;

    let client = redis::Client::open(redis_url()).unwrap();
    let forge = |good: &str, forgery: Forgery| -> String {
        let (sid, _) = good.rsplit_once('.').unwrap();
        match forgery {
            Forgery::Tampered => tamper(good),
            Forgery::UnknownKey => {
                cloakroom::IdFormat::encode(&FlaskSessionIds::signed("a key neither app has"), sid)
            }
            // An ID no session has, correctly signed: as good as expired.
            Forgery::Expired => cloakroom::IdFormat::encode(
                &FlaskSessionIds::signed(KEY),
                &cloakroom::SessionId::generate().to_cookie_value(),
            ),
        }
    };
    let expire = {
        let (client, prefix) = (client.clone(), prefix.clone());
        move |cookie: String| -> Pending {
            let (client, prefix) = (client.clone(), prefix.clone());
            Box::pin(async move {
                let (sid, _) = cookie.rsplit_once('.').unwrap();
                let mut connection = client.get_multiplexed_async_connection().await.unwrap();
                let set: i64 = redis::cmd("PEXPIRE")
                    .arg(format!("{prefix}{sid}"))
                    .arg(1)
                    .query_async(&mut connection)
                    .await
                    .unwrap();
                assert_eq!(set, 1, "the session is in Redis under Flask-Session's key");
                tokio::time::sleep(Duration::from_millis(20)).await;
                cookie
            })
        }
    };
    shared_sessions(flask.addr, rust, forge, expire).await;

    support::clean(&redis_url(), &prefix).await;
}
