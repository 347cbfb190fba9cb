//! End-to-end in a real headless Chromium, driven over WebDriver (chromedriver), against the
//! demo binary on axum and on actix-web (`--framework`), on SQLite, PostgreSQL, Redis and
//! client-side sessions.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/browser.sh` installs them).
//! Without them the tests skip loudly, unless `CLOAKROOM_REQUIRE_SERVICES=1`.

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};

mod support;
use support::chromium::{
    browser, click, installed, log_in, start_chromedriver, start_demo, type_into, wait_text,
};
use support::{free_port, skip, wait_for_port};

/// Waits for the page to show `expected` in the element `id`.
async fn shows(client: &Client, id: &str, expected: &str) {
    wait_text(client, id, expected, "the story", Duration::from_secs(10)).await;
}

async fn count(client: &Client, css: &str) -> usize {
    client
        .find_all(Locator::Css(css))
        .await
        .map(|v| v.len())
        .unwrap_or(0)
}

async fn wait_count(client: &Client, css: &str, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(client, css).await != expected {
        assert!(Instant::now() < deadline, "{css} never counted {expected}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn session_cookie(client: &Client) -> Option<String> {
    let cookies = client.get_all_cookies().await.unwrap();
    cookies
        .iter()
        .find(|c| c.name() == "id")
        .map(|c| c.value().to_owned())
}

/// The five steps of the demo's end-to-end story, on `framework` (`axum` or `actix`).
async fn story(framework: &str, store: &str) {
    if !installed() {
        return skip("Chromium or chromedriver is not installed: run scripts/browser.sh");
    }
    let dir = tempfile::tempdir().unwrap();
    let (app_port, driver_port) = (free_port(), free_port());
    let _demo = start_demo(app_port, framework, store, &[], dir.path());
    let _driver = start_chromedriver(driver_port);
    wait_for_port(app_port, "the demo");
    wait_for_port(driver_port, "chromedriver");
    let base = format!("http://127.0.0.1:{app_port}/");
    let (first_profile, second_profile) = (dir.path().join("first"), dir.path().join("second"));
    let first = browser(driver_port, &first_profile, &[]).await;
    let second = browser(driver_port, &second_profile, &[]).await;

    // 1. Log in as alice.
    log_in(&first, &base).await;
    let first_cookie = session_cookie(&first)
        .await
        .expect("a session cookie after login");
    // Served on 127.0.0.1 over plain HTTP, the cookie is still Secure, and the browser
    // keeps it and sends it back (the rest of the story depends on that).
    let cookies = first.get_all_cookies().await.unwrap();
    let cookie = cookies.iter().find(|c| c.name() == "id").unwrap();
    assert_eq!(cookie.secure(), Some(true), "{cookie}");
    assert_eq!(cookie.http_only(), Some(true), "{cookie}");

    // 2. Add to the cart; the cart survives a reload.
    type_into(&first, "item", "umbrella").await;
    click(&first, "add-button").await;
    shows(&first, "cart", "umbrella").await;
    first.refresh().await.unwrap();
    shows(&first, "status", "Logged in as alice").await;
    shows(&first, "cart", "umbrella").await;

    // 3. A second, separate browser profile logs in as alice.
    log_in(&second, &base).await;
    assert_ne!(
        session_cookie(&second).await,
        Some(first_cookie),
        "two devices, two sessions"
    );
    first.refresh().await.unwrap();
    // Client-side sessions know only the device asking.
    let client_side = store == "cookie://";
    wait_count(&first, "#devices tr", if client_side { 1 } else { 2 }).await;
    // Devices are named as people name them; the raw user agent is the cell's tooltip.
    let device = first.find(Locator::Css("#devices tr td")).await.unwrap();
    let (named, raw) = (
        device.text().await.unwrap(),
        device.attr("title").await.unwrap().unwrap_or_default(),
    );
    assert!(named.contains(" on Linux"), "{named}");
    assert!(
        raw.starts_with("Mozilla/5.0") && !named.contains("Mozilla"),
        "{raw}"
    );
    if let Ok(path) = std::env::var("CLOAKROOM_SCREENSHOT") {
        std::fs::write(path, first.screenshot().await.unwrap()).unwrap();
    }

    // 4. The first uses "log out other devices"; the second is logged out on its next request.
    click(&first, "revoke-others-button").await;
    let message = if client_side {
        "Logged out"
    } else {
        "Logged out 1 other device"
    };
    shows(&first, "error", message).await;
    wait_count(&first, "#devices tr", 1).await;
    second.refresh().await.unwrap();
    shows(&second, "status", "Not logged in").await;
    shows(&first, "status", "Logged in as alice").await;

    // 5. Logout clears the cookie.
    click(&first, "logout-button").await;
    shows(&first, "status", "Not logged in").await;
    assert_eq!(
        session_cookie(&first).await,
        None,
        "logout removed the session cookie"
    );

    first.close().await.unwrap();
    second.close().await.unwrap();
}

async fn postgres_story(framework: &str) {
    let url = std::env::var("CLOAKROOM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let pool = match sqlx::PgPool::connect(&url).await {
        Ok(pool) => pool,
        Err(error) => return skip(&format!("PostgreSQL at {url} is unreachable ({error})")),
    };
    let table = format!("e2e_{framework}_{}", std::process::id());
    story(framework, &format!("{url}?table={table}")).await;
    sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
        .execute(&pool)
        .await
        .unwrap();
}

async fn redis_story(framework: &str) {
    if std::net::TcpStream::connect("127.0.0.1:6379").is_err() {
        return skip("Redis at 127.0.0.1:6379 is unreachable");
    }
    // A prefix of its own, so the story's users' sessions start empty.
    let prefix = format!("e2e-{framework}-{}-", std::process::id());
    story(
        framework,
        &format!("redis://127.0.0.1:6379/0?prefix={prefix}"),
    )
    .await;
}

/// Each story as two tests, one per framework the demo runs on: the first name runs it on
/// axum, the second on actix-web (`STORY(framework, ARGS…)`).
macro_rules! on_both_frameworks {
    ($($axum:ident, $actix:ident => $story:ident($($arg:expr),*);)+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $axum() {
                $story("axum" $(, $arg)*).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $actix() {
                $story("actix" $(, $arg)*).await;
            }
        )+
    };
}

on_both_frameworks! {
    browser_story_on_sqlite, browser_story_on_sqlite_on_actix => story("sqlite://sessions.db");
    browser_story_on_postgres, browser_story_on_postgres_on_actix => postgres_story();
    browser_story_on_redis, browser_story_on_redis_on_actix => redis_story();
    browser_story_on_client_side_sessions, browser_story_on_client_side_sessions_on_actix =>
        story("cookie://");
}
