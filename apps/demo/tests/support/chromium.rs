//! What the two Chromium tests share: the demo and chromedriver as child processes, a
//! headless Chromium session over WebDriver, and reading the page.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// Debian's Chromium (`scripts/browser.sh` installs it).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's chromedriver, installed beside it.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether both are installed (the tests skip loudly otherwise).
pub fn installed() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

/// A child process killed when the test ends, however it ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The demo binary on `127.0.0.1:port` with `--framework framework --store store` and
/// `extra` arguments, run in `dir` (where a `sqlite://` store keeps its file).
pub fn start_demo(port: u16, framework: &str, store: &str, extra: &[&str], dir: &Path) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_cloakroom-demo"))
        .args(["--addr", &format!("127.0.0.1:{port}"), "--store", store])
        .args(["--framework", framework])
        .args(extra)
        .env("CLOAKROOM_DEMO_KEY", cloakroom::generate_key())
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the demo");
    Running(child)
}

/// chromedriver listening on `port`.
pub fn start_chromedriver(port: u16) -> Running {
    Running(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    )
}

/// A fresh headless Chromium with its own profile in `profile`, plus `extra` flags.
pub async fn browser(driver: u16, profile: &Path, extra: &[String]) -> Client {
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,900",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend_from_slice(extra);
    args.push(format!("--user-data-dir={}", profile.display()));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": CHROMIUM, "args": args }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver}"))
        .await
        .expect("a Chromium session over WebDriver")
}

/// The text of the element with this `id`, or "" when there is none.
pub async fn text(client: &Client, id: &str) -> String {
    match client.find(Locator::Id(id)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits up to `within` for the element `id` to show `expected`; `why` names the step in
/// the failure.
pub async fn wait_text(client: &Client, id: &str, expected: &str, why: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = text(client, id).await;
        if now.contains(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "#{id} never showed {expected:?} ({why}); it shows {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Types `text` into the element with the id `id`.
pub async fn type_into(client: &Client, id: &str, text: &str) {
    let element = client.find(Locator::Id(id)).await.unwrap();
    element.send_keys(text).await.unwrap();
}

/// Clicks the element with the id `id`.
pub async fn click(client: &Client, id: &str) {
    let element = client.find(Locator::Id(id)).await.unwrap();
    element.click().await.unwrap();
}

/// Opens the page at `base` and logs in as alice through its form, as a user would.
pub async fn log_in(client: &Client, base: &str) {
    let within = Duration::from_secs(15);
    client.goto(base).await.unwrap();
    wait_text(client, "status", "Not logged in", "the page", within).await;
    type_into(client, "username", "alice").await;
    type_into(client, "password", "wonderland").await;
    click(client, "login-button").await;
    wait_text(client, "status", "Logged in as alice", "the login", within).await;
}
