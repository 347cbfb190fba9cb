//! A private memcached for tests (feature `testing`): started on a spare loopback port and
//! stopped when dropped, so a test that fills or restarts it never disturbs another.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A memcached this process started; killed and reaped when dropped.
#[derive(Debug)]
pub struct TestMemcached {
    port: u16,
    child: Child,
}

impl TestMemcached {
    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, as [`MemcachedStore::connect`](crate::MemcachedStore::connect)
    /// takes it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the server (`SIGSTOP`), as a hung one: its connections stay open and nothing
    /// answers on them.
    ///
    /// # Panics
    /// When the signal cannot be sent.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a [frozen](Self::freeze) server go on (`SIGCONT`).
    ///
    /// # Panics
    /// As [`freeze`](Self::freeze).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill {signal} failed");
    }
}

impl Drop for TestMemcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A memcached with the defaults the tests assume (64 MB, no UDP); `None` after a loud
/// skip when memcached is not installed.
///
/// # Panics
/// When memcached is not installed and `CLOAKROOM_REQUIRE_SERVICES=1`, or when it does not
/// start.
pub async fn start() -> Option<TestMemcached> {
    start_with(&[]).await
}

/// [`start`] with extra command-line options (`-I 2k`: a small item size limit).
///
/// A spare port can be taken between choosing it and memcached binding it (tests start
/// servers in parallel): then this memcached exits, and whatever answers on the port is
/// not it. So the server counts as started only while its own process is alive, and a
/// lost port is retried with another.
///
/// # Panics
/// As [`start`].
pub async fn start_with(extra: &[&str]) -> Option<TestMemcached> {
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a spare loopback port")
            .port();
        let child = Command::new("memcached")
            .args(["-l", "127.0.0.1", "-p", &port.to_string()])
            .args(["-U", "0", "-m", "64", "-u", "root"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(error) => {
                cloakroom::testing::skip(&format!(
                    "memcached is not installed ({error}): run scripts/services.sh"
                ));
                return None;
            }
        };
        let mut server = TestMemcached { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if server.child.try_wait().ok().flatten().is_some() {
                break; // it could not bind: another port
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                // Still ours once it answers: a memcached that lost the port exits at once.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if server.child.try_wait().ok().flatten().is_none() {
                    return Some(server);
                }
                break;
            }
            assert!(Instant::now() < deadline, "memcached did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("memcached could not bind a spare port in five tries")
}
