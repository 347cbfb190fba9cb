//! The demo binary as an operator starts it: what it prints and the cookies it sends.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{free_port, wait_for_port};

fn demo(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cloakroom-demo"))
        .args(args)
        .env("RUST_LOG", "debug")
        .env_remove("CLOAKROOM_DEMO_KEY")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo")
}

/// Waits until the demo listens (its startup line is printed by then), then stops it.
fn serve_then_stop(mut child: Child, port: u16) -> Output {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let output = child.wait_with_output().unwrap();
            panic!(
                "the demo exited with {status}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        assert!(Instant::now() < deadline, "the demo never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait_with_output().unwrap()
}

fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_startup_log_never_shows_store_secrets() {
    for url in [
        "memory://admin:pw-userinfo@localhost",
        "memory://?password=pw-query",
        "memory://localhost/?token=pw-token&prefix=x",
    ] {
        let port = free_port();
        let output = serve_then_stop(
            demo(&["--addr", &format!("127.0.0.1:{port}"), "--store", url]),
            port,
        );
        let text = printed(&output);
        assert!(
            text.contains("cloakroom demo on"),
            "no startup line:\n{text}"
        );
        assert!(!text.contains("pw-"), "{url} leaked:\n{text}");
        assert!(text.contains("***"), "the URL is shown redacted:\n{text}");
    }
}

#[test]
fn store_errors_never_show_store_secrets() {
    for url in [
        "postgres://postgres:pw-userinfo@127.0.0.1:1/test",
        "postgres://postgres@127.0.0.1:1/test?password=pw-query",
        "redis://:pw-redis@127.0.0.1:1",
        "nats://user:pw-unknown@127.0.0.1:1",
    ] {
        let port = free_port();
        let output = demo(&["--addr", &format!("127.0.0.1:{port}"), "--store", url])
            .wait_with_output()
            .unwrap();
        assert!(!output.status.success(), "{url} opened?");
        let text = printed(&output);
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

#[test]
fn cookies_are_secure_on_loopback_unless_insecure_cookies_is_given() {
    let port = free_port();
    let mut child = demo(&[
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--store",
        "memory://",
    ]);
    wait_for_port(port, "the demo");
    let cookie = set_cookie_of_a_write(port);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("; HttpOnly"), "{cookie}");

    let port = free_port();
    let mut child = demo(&[
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--store",
        "memory://",
        "--insecure-cookies",
    ]);
    wait_for_port(port, "the demo");
    let cookie = set_cookie_of_a_write(port);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!cookie.contains("Secure"), "{cookie}");
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
    let output = demo(&["--addr", "127.0.0.1:0", "--store", "carrier-pigeon://coop"])
        .wait_with_output()
        .unwrap();
    assert!(!output.status.success());
    let text = printed(&output);
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloakroom-demo"))
        .args([
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--store",
            &secret_url,
        ])
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let started = tokio::task::spawn_blocking(move || {
        wait_for_port(port, "the demo");
        set_cookie_of_a_write(port);
        child.kill().unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
        .execute(&pool)
        .await
        .unwrap();
    let text = printed(&started);
    assert!(text.contains("cloakroom demo on"), "{text}");
    assert!(!text.contains("pw-"), "a secret was logged:\n{text}");
}
