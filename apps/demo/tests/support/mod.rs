//! What the demo's process-level tests share: ports, waiting for a server, skipping.

#![allow(dead_code)] // Each test file uses its own part.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

pub use cloakroom::testing::skip;

pub mod chromium;

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
