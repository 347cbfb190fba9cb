//! What the demo's process-level tests share: ports, waiting for a server, skipping.

#![allow(dead_code)] // Each test file uses its own part.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Whether a missing service fails the test instead of skipping it (CI).
pub fn require_services() -> bool {
    std::env::var("CLOAKROOM_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Skips loudly, or fails under `CLOAKROOM_REQUIRE_SERVICES=1`.
pub fn skip(message: &str) {
    assert!(
        !require_services(),
        "{message} (CLOAKROOM_REQUIRE_SERVICES=1)"
    );
    eprintln!("\n****************************************\nSKIPPING: {message}\n****************************************\n");
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (20 s at most) until something listens on `port`.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
