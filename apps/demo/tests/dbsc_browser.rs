//! Device-bound sessions (DBSC) end to end in Debian's Chromium, against the demo binary.
//!
//! Chromium runs headless with DBSC switched on through its feature flags and software
//! keys, over TLS it counts as valid: a self-signed `localhost` certificate whose public-key
//! hash is passed in `--ignore-certificate-errors-spki-list` (docs/dbsc-chromium-probe.md:
//! Chrome 156 ignores DBSC on plain `http://localhost` and on certificate errors that are
//! merely ignored). The TLS end is a proxy inside the test, in front of the demo's loopback
//! HTTP port; it also counts the registration and refresh requests Chrome sends.
//!
//! The story, with a 180 s bound cookie: the browser logs in through the page and registers
//! a key; a thief copies every cookie the browser holds into a plain HTTP client; the page
//! is used every 20 s for longer than the bound cookie lives. Chrome must refresh the bound
//! cookie on its own and stay logged in, while the thief's copy dies with the bound cookie
//! it copied, and the session cookie alone never logs the thief in.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/browser.sh` installs them).
//! Without them the test skips loudly, unless `CLOAKROOM_REQUIRE_SERVICES=1`. It takes about
//! 3.5 minutes: the bound cookie has to expire, and the core refuses lifetimes under 151 s.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use cloakroom::dbsc::binding::DEFAULT_REGISTRATION_GRACE;
use fantoccini::Client;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

mod support;
use support::chromium::{
    browser, click, installed, log_in, start_chromedriver, start_demo, type_into, wait_text,
};
use support::{free_port, skip, wait_for_port};

const DBSC_FEATURES: &str =
    "--enable-features=DeviceBoundSessions,EnableBoundSessionCredentialsSoftwareKeysForManualTesting";
/// Well above Chrome's 120 s proactive-refresh threshold, so that Chrome refreshes about
/// once a minute and stays inside its refresh quota (a 45 s cookie tripped it in the probe).
const BOUND_COOKIE_LIFETIME: Duration = Duration::from_secs(180);
/// How often the browser uses the page while the bound cookie ages.
const POLL: Duration = Duration::from_secs(20);
/// How long the page may take to show a step's outcome.
const WAIT: Duration = Duration::from_secs(15);
const SESSION_COOKIE: &str = "id";
const BOUND_COOKIE: &str = "cloakroom_bound";
const REGISTER: &[u8] = b"POST /.cloakroom/dbsc/register ";
const REFRESH: &[u8] = b"POST /.cloakroom/dbsc/refresh ";

/// The DBSC requests the proxy saw go from the browser to the demo.
#[derive(Default)]
struct Seen {
    registrations: AtomicUsize,
    refreshes: AtomicUsize,
}

impl Seen {
    fn counts(&self) -> (usize, usize) {
        (
            self.registrations.load(Ordering::SeqCst),
            self.refreshes.load(Ordering::SeqCst),
        )
    }
}

/// Counts `needle` in the byte stream `chunk` continues, `tail` holding the previous
/// chunk's last bytes, so that a request line split across two reads is counted once.
fn count_in_stream(tail: &mut Vec<u8>, chunk: &[u8], needle: &[u8]) -> usize {
    let mut window = std::mem::take(tail);
    let carried = window.len();
    window.extend_from_slice(chunk);
    let found = window
        .windows(needle.len())
        .enumerate()
        .filter(|(at, w)| *w == needle && at + needle.len() > carried)
        .count();
    let keep = window.len().saturating_sub(needle.len() - 1);
    *tail = window.split_off(keep);
    found
}

/// A self-signed certificate for `localhost`, its key, and the base64 SHA-256 of its
/// public key as `--ignore-certificate-errors-spki-list` takes it.
fn certificate() -> (
    rustls::pki_types::CertificateDer<'static>,
    rustls::pki_types::PrivateKeyDer<'static>,
    String,
) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("a self-signed localhost certificate");
    let spki = Sha256::digest(certified.key_pair.public_key_der());
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
    (
        certified.cert.der().clone(),
        key.into(),
        base64::engine::general_purpose::STANDARD.encode(spki),
    )
}

/// Serves TLS on `listener`, forwarding each connection to the demo on `upstream`;
/// returns the SPKI hash of its certificate.
fn tls_proxy(listener: TcpListener, upstream: u16, seen: Arc<Seen>) -> String {
    let (cert, key, spki) = certificate();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("a TLS server configuration");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(demo) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                let (mut from_browser, mut to_browser) = tokio::io::split(tls);
                let (mut from_demo, mut to_demo) = demo.into_split();
                let requests = async move {
                    let (mut buf, mut tails) = (vec![0; 16 * 1024], (Vec::new(), Vec::new()));
                    loop {
                        let n = match from_browser.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        let registrations = count_in_stream(&mut tails.0, chunk, REGISTER);
                        let refreshes = count_in_stream(&mut tails.1, chunk, REFRESH);
                        seen.registrations
                            .fetch_add(registrations, Ordering::SeqCst);
                        seen.refreshes.fetch_add(refreshes, Ordering::SeqCst);
                        if to_demo.write_all(chunk).await.is_err() {
                            break;
                        }
                    }
                    let _ = to_demo.shutdown().await;
                };
                let responses = async move {
                    let _ = tokio::io::copy(&mut from_demo, &mut to_browser).await;
                    let _ = to_browser.shutdown().await;
                };
                tokio::join!(requests, responses);
            });
        }
    });
    spki
}

/// `GET /api/me` from inside the page, as the page's own script asks: its status and body.
async fn me_in_browser(client: &Client) -> (u64, Value) {
    let script = r#"
        const done = arguments[arguments.length - 1];
        fetch('/api/me').then(async r => done([r.status, await r.json().catch(() => null)]))
            .catch(e => done([0, String(e)]));
    "#;
    let answer = client.execute_async(script, vec![]).await.unwrap();
    (answer[0].as_u64().unwrap_or(0), answer[1].clone())
}

/// The browser's cookies for the page, `HttpOnly` ones included, as `(name, value)`.
async fn cookies(client: &Client) -> Vec<(String, String)> {
    let cookies = client.get_all_cookies().await.unwrap();
    cookies
        .iter()
        .map(|c| (c.name().to_owned(), c.value().to_owned()))
        .collect()
}

fn value_of<'a>(cookies: &'a [(String, String)], name: &str) -> Option<&'a str> {
    cookies
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A plain HTTP client without DBSC, sending `cookies` straight to the demo on `port`:
/// the status of its `GET /api/me`.
async fn thief_me(port: u16, cookies: &[(String, String)]) -> u16 {
    let header = cookies
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!(
        "GET /api/me HTTP/1.1\r\nHost: localhost\r\nCookie: {header}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

async fn story(framework: &str) {
    if !installed() {
        return skip("Chromium or chromedriver is not installed: run scripts/browser.sh");
    }
    let dir = tempfile::tempdir().unwrap();
    // Bound before the other ports are picked, so that it cannot take one of them (the
    // other framework's story picks its ports at the same time).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_port = listener.local_addr().unwrap().port();
    let (app_port, driver_port) = (free_port(), free_port());
    let lifetime = format!("{}s", BOUND_COOKIE_LIFETIME.as_secs());
    let store = "sqlite://sessions.db";
    let extra = ["--bound-cookie-lifetime", lifetime.as_str()];
    let mut demo = start_demo(app_port, framework, store, &extra, dir.path());
    let _driver = start_chromedriver(driver_port);
    wait_for_port(app_port, "the demo");
    wait_for_port(driver_port, "chromedriver");
    // Something else could have taken the port between free_port and the demo's bind.
    assert!(
        demo.0.try_wait().unwrap().is_none(),
        "the demo exited at startup (was port {app_port} taken?)"
    );
    assert_eq!(thief_me(app_port, &[]).await, 401, "the demo, anonymous");
    let seen = Arc::new(Seen::default());
    let spki = tls_proxy(listener, app_port, Arc::clone(&seen));
    let base = format!("https://localhost:{tls_port}/");
    // No `acceptInsecureCerts`: an ignored certificate error turns DBSC off in Chrome.
    let flags = [
        DBSC_FEATURES.to_owned(),
        format!("--ignore-certificate-errors-spki-list={spki}"),
    ];
    let client = browser(driver_port, &dir.path().join("profile"), &flags).await;
    let flags = format!("{DBSC_FEATURES} --ignore-certificate-errors-spki-list=<the proxy's>");

    // 1. Log in through the page, as a user would.
    log_in(&client, &base).await;

    // 2. Chrome registers a key: the session reads as bound, and the page says so.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, me) = me_in_browser(&client).await;
        if status == 200 && me["device_bound"] == true {
            break;
        }
        let (registrations, _) = seen.counts();
        assert!(
            Instant::now() < deadline,
            "Chrome did not register a bound session within 15s of the login: /api/me \
             answers {status} {me}, and Chrome sent {registrations} registration request(s) \
             (flags: {flags})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    client.refresh().await.unwrap();
    wait_text(
        &client,
        "bound",
        "This device is bound",
        "after registration",
        WAIT,
    )
    .await;
    let registered = Instant::now();

    // 3. A thief copies every cookie the browser holds, HttpOnly ones too.
    let copied = cookies(&client).await;
    let session_only: Vec<_> = copied
        .iter()
        .filter(|(n, _)| n == SESSION_COOKIE)
        .cloned()
        .collect();
    assert_eq!(session_only.len(), 1, "no session cookie in {copied:?}");
    let copied_bound = value_of(&copied, BOUND_COOKIE)
        .unwrap_or_else(|| panic!("Chrome holds no {BOUND_COOKIE} cookie: {copied:?}"))
        .to_owned();
    // The copy works at first (or the checks below could not fail)...
    assert_eq!(thief_me(app_port, &copied).await, 200, "the fresh copy");
    // ...but never without the bound cookie, once the registration grace (the moments
    // in which the first bound cookie may still be on its way to the browser) is over.
    tokio::time::sleep(DEFAULT_REGISTRATION_GRACE).await;
    assert_eq!(thief_me(app_port, &session_only).await, 401, "session only");

    // 4. The browser keeps using the page past the copied bound cookie's lifetime.
    let mut last_worked = Duration::ZERO;
    while registered.elapsed() < BOUND_COOKIE_LIFETIME + Duration::from_secs(15) {
        tokio::time::sleep(POLL).await;
        let at = registered.elapsed().as_secs();
        let (status, me) = me_in_browser(&client).await;
        let (_, refreshes) = seen.counts();
        assert!(
            status == 200 && me["device_bound"] == true,
            "{at}s after registration the browser is no longer logged in as a bound \
             session (/api/me: {status} {me}): Chrome did not keep its bound cookie fresh \
             ({refreshes} refresh request(s) so far)"
        );
        assert_eq!(
            thief_me(app_port, &session_only).await,
            401,
            "{at}s after registration the session cookie alone logged the thief in"
        );
        // Taken before the request, so that it is no later than the server's check.
        let asked = registered.elapsed();
        if thief_me(app_port, &copied).await == 200 {
            last_worked = asked;
        }
    }

    // 5. Chrome refreshed on its own; the copy is dead; the browser is still logged in.
    let (registrations, refreshes) = seen.counts();
    assert!(
        refreshes >= 1,
        "Chrome sent no refresh request in {}s of a {}s bound cookie",
        registered.elapsed().as_secs(),
        BOUND_COOKIE_LIFETIME.as_secs()
    );
    let now_bound = value_of(&cookies(&client).await, BOUND_COOKIE).map(str::to_owned);
    assert!(
        now_bound.is_some() && now_bound.as_deref() != Some(copied_bound.as_str()),
        "Chrome's bound cookie was not replaced by a refresh: {now_bound:?}"
    );
    assert_eq!(
        thief_me(app_port, &copied).await,
        401,
        "the copied cookies still log in {}s after registration, past the {}s bound cookie",
        registered.elapsed().as_secs(),
        BOUND_COOKIE_LIFETIME.as_secs()
    );
    assert!(
        last_worked < BOUND_COOKIE_LIFETIME,
        "the copy last worked {}s after registration",
        last_worked.as_secs()
    );
    client.refresh().await.unwrap();
    wait_text(
        &client,
        "status",
        "Logged in as alice",
        "after the refreshes",
        WAIT,
    )
    .await;
    wait_text(
        &client,
        "bound",
        "This device is bound",
        "after the refreshes",
        WAIT,
    )
    .await;
    type_into(&client, "item", "umbrella").await;
    click(&client, "add-button").await;
    wait_text(
        &client,
        "cart",
        "umbrella",
        "a write after the refreshes",
        WAIT,
    )
    .await;
    eprintln!(
        "dbsc_browser on {framework}: {registrations} registration(s), {refreshes} refresh(es) \
         in {}s; the copy last worked {}s after registration",
        registered.elapsed().as_secs(),
        last_worked.as_secs()
    );
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_binds_refreshes_and_outlives_a_copied_cookie() {
    story("axum").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_binds_refreshes_and_outlives_a_copied_cookie_on_actix() {
    story("actix").await;
}

#[test]
fn a_request_line_split_across_reads_is_counted_once() {
    let mut tail = Vec::new();
    let (first, second) = REFRESH.split_at(7);
    assert_eq!(count_in_stream(&mut tail, b"xx", REFRESH), 0);
    assert_eq!(count_in_stream(&mut tail, first, REFRESH), 0);
    assert_eq!(count_in_stream(&mut tail, second, REFRESH), 1);
    assert_eq!(count_in_stream(&mut tail, b"HTTP/1.1", REFRESH), 0);
    let two = [REFRESH, b"a", REFRESH].concat();
    assert_eq!(count_in_stream(&mut tail, &two, REFRESH), 2);
}
