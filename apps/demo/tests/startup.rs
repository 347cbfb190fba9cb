//! The demo binary as an operator starts it: what it prints and the cookies it sends.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

mod support;
use support::{free_port, wait_for_port};

/// A demo process, everything it prints (both streams, in the order it printed them)
/// going to one file.
struct Demo {
    child: Child,
    log: File,
}

impl Demo {
    /// Starts the demo on `127.0.0.1:port` over `store`, with `extra` flags, logging at
    /// `level`.
    fn start(port: u16, store: &str, extra: &[&str], level: &str) -> Self {
        let log = tempfile::tempfile().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cloakroom-demo"))
            .args(["--addr", &format!("127.0.0.1:{port}"), "--store", store])
            .args(extra)
            .env("RUST_LOG", level)
            .env_remove("CLOAKROOM_DEMO_KEY")
            .current_dir(std::env::temp_dir())
            .stdout(log.try_clone().unwrap())
            .stderr(log.try_clone().unwrap())
            .spawn()
            .expect("start the demo");
        Self { child, log }
    }

    /// Waits for the demo to exit by itself: how it ended, and what it printed.
    fn finish(mut self) -> (ExitStatus, String) {
        let status = self.child.wait().unwrap();
        (status, self.printed())
    }

    /// Stops the demo: what it printed.
    fn stop(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.printed()
    }

    fn printed(&mut self) -> String {
        let mut bytes = Vec::new();
        self.log.rewind().unwrap();
        self.log.read_to_end(&mut bytes).unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Waits until the demo listens (its startup line is printed by then), then stops it.
    fn serve_then_stop(mut self, port: u16) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the demo exited with {status}: {}", self.printed());
            }
            assert!(Instant::now() < deadline, "the demo never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop()
    }
}

#[test]
fn the_startup_log_never_shows_store_secrets() {
    let url = "memory://admin:pw-userinfo@localhost";
    let port = free_port();
    let text = Demo::start(port, url, &[], "debug").serve_then_stop(port);
    assert!(
        text.contains("cloakroom demo on"),
        "no startup line:\n{text}"
    );
    assert!(!text.contains("pw-"), "{url} leaked:\n{text}");
    assert!(text.contains("***"), "the URL is shown redacted:\n{text}");
}

#[test]
fn store_errors_never_show_store_secrets() {
    for url in [
        "postgres://postgres:pw-userinfo@127.0.0.1:1/test",
        "postgres://postgres@127.0.0.1:1/test?password=pw-query",
        "redis://:pw-redis@127.0.0.1:1",
        "nats://user:pw-unknown@127.0.0.1:1",
        // Refused: memory:// takes no parameters. The refusal names them, redacted.
        "memory://?password=pw-query",
        "memory://localhost/?token=pw-token&prefix=x",
    ] {
        let (status, text) = Demo::start(free_port(), url, &[], "debug").finish();
        assert!(!status.success(), "{url} opened?");
        assert!(!text.contains("pw-"), "{url} leaked:\n{text}");
    }
}

/// The `Set-Cookie` header of a `POST /api/counter` to the demo on `port`.
fn set_cookie_of_a_write(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /api/counter HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .lines()
        .find(|line| line.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie in {response}"))
        .to_owned()
}

/// The `Set-Cookie` header of a write to the demo on the memory store, run with `flags`.
fn set_cookie_with(flags: &[&str]) -> String {
    let port = free_port();
    let demo = Demo::start(port, "memory://", flags, "debug");
    wait_for_port(port, "the demo");
    let cookie = set_cookie_of_a_write(port);
    demo.stop();
    cookie
}

#[test]
fn cookies_are_secure_on_loopback_unless_insecure_cookies_is_given() {
    let cookie = set_cookie_with(&[]);
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("; HttpOnly"), "{cookie}");

    let cookie = set_cookie_with(&["--insecure-cookies"]);
    assert!(!cookie.contains("Secure"), "{cookie}");
}

/// The response headers of a login as alice to the demo on the memory store, run with
/// `flags`.
fn login_headers_with(flags: &[&str]) -> String {
    let port = free_port();
    let demo = Demo::start(port, "memory://", flags, "info");
    wait_for_port(port, "the demo");
    let body = r#"{"username":"alice","password":"wonderland"}"#;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    demo.stop();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase()
}

#[test]
fn logins_offer_device_binding_unless_no_device_binding_is_given() {
    let headers = login_headers_with(&[]);
    assert!(
        headers.contains("\r\nsecure-session-registration: (es256 rs256);"),
        "{headers}"
    );
    let headers = login_headers_with(&["--no-device-binding"]);
    assert!(
        !headers.contains("secure-session-registration"),
        "{headers}"
    );
    assert!(headers.contains("set-cookie: id="), "{headers}");
}

#[test]
fn a_bound_cookie_lifetime_below_the_minimum_is_refused_with_the_reason() {
    let flags = ["--bound-cookie-lifetime", "150s"];
    let (status, text) = Demo::start(free_port(), "memory://", &flags, "info").finish();
    assert!(!status.success(), "150s was accepted:\n{text}");
    assert!(
        text.contains("a bound cookie lifetime of 150s is too short")
            && text.contains("at least 151s"),
        "{text}"
    );
    // The minimum itself is served.
    let port = free_port();
    let flags = ["--bound-cookie-lifetime", "151s"];
    let text = Demo::start(port, "memory://", &flags, "info").serve_then_stop(port);
    assert!(text.contains("cloakroom demo on"), "{text}");
}

#[test]
fn help_documents_the_flags_and_every_store_scheme() {
    let output = Command::new(env!("CARGO_BIN_EXE_cloakroom-demo"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--insecure-cookies",
        "--max-sessions-per-user",
        "--store",
        "--framework",
        "--no-device-binding",
        "--bound-cookie-lifetime",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
    for scheme in cloakroom_stores::SCHEMES {
        assert!(
            help.contains(scheme.usage),
            "{} missing from --help:\n{help}",
            scheme.usage
        );
    }
}

#[test]
fn an_unknown_scheme_lists_every_store_scheme() {
    let (status, text) = Demo::start(0, "carrier-pigeon://coop", &[], "debug").finish();
    assert!(!status.success());
    for scheme in cloakroom_stores::SCHEMES {
        assert!(
            text.contains(scheme.usage),
            "{} missing:\n{text}",
            scheme.usage
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_store_logs_nothing_secret_even_at_trace_level() {
    let url = std::env::var("CLOAKROOM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let pool = match sqlx::PgPool::connect(&url).await {
        Ok(pool) => pool,
        Err(error) => {
            return support::skip(&format!("PostgreSQL at {url} is unreachable ({error})"))
        }
    };
    // The test server trusts loopback, so it ignores the password the URL carries.
    let Some((user, location)) = url
        .strip_prefix("postgres://")
        .and_then(|rest| rest.split_once('@'))
        .filter(|(user, _)| !user.contains(':'))
    else {
        return support::skip(&format!("{url} is not postgres://USER@HOST/DB"));
    };
    let table = format!("startup_{}", std::process::id());
    let secret_url =
        format!("postgres://{user}:pw-userinfo@{location}?table={table}&password=pw-query");
    let port = free_port();
    let demo = Demo::start(port, &secret_url, &[], "trace");
    let text = tokio::task::spawn_blocking(move || {
        wait_for_port(port, "the demo");
        set_cookie_of_a_write(port);
        demo.stop()
    })
    .await
    .unwrap();
    sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
        .execute(&pool)
        .await
        .unwrap();
    assert!(text.contains("cloakroom demo on"), "{text}");
    assert!(!text.contains("pw-"), "a secret was logged:\n{text}");
}
