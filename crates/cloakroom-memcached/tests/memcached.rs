//! The Memcached store against a real memcached this test starts on a spare loopback port
//! (`scripts/services.sh` installs memcached; without it the tests skip loudly, unless
//! `CLOAKROOM_REQUIRE_SERVICES=1`).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cloakroom::{record, Record, SessionId, SessionStore, UpdateError};
use cloakroom_memcached::MemcachedStore;

struct Memcached {
    port: u16,
    child: Child,
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start() -> Option<Memcached> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("memcached")
        .args([
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-m",
            "64",
            "-u",
            "root",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(error) => {
            let message = format!("memcached is not installed ({error}): run scripts/services.sh");
            assert!(
                std::env::var("CLOAKROOM_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{message}"
            );
            eprintln!("\n*****\nSKIPPING: {message}\n*****\n");
            return None;
        }
    };
    let server = Memcached { port, child };
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "memcached did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Some(server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memcached_store_passes_the_conformance_suite() {
    let Some(server) = start().await else { return };
    let address = format!("127.0.0.1:{}", server.port);
    let counter = AtomicUsize::new(0);
    cloakroom::conformance::run(|| {
        let prefix = format!("c{}:", counter.fetch_add(1, Ordering::SeqCst));
        let address = address.clone();
        async move {
            MemcachedStore::connect(&address)
                .await
                .unwrap()
                .with_prefix(&prefix)
        }
    })
    .await;
}

#[tokio::test]
async fn long_lived_sessions_use_an_absolute_expiry() {
    let Some(server) = start().await else { return };
    let store = MemcachedStore::connect(&format!("memcached://127.0.0.1:{}", server.port))
        .await
        .unwrap();
    let t = record::now();
    let record = Record::new(
        t,
        Some(t + time::Duration::days(45)),
        Some(t + time::Duration::days(60)),
    );
    let key = SessionId::generate().store_key();
    store.insert(&key, &record).await.unwrap();
    // Sent as a relative TTL of 45 days, memcached would read it as a time in 1970 and
    // drop the item at once.
    assert_eq!(store.load(&key).await.unwrap(), Some(record));
}

#[tokio::test]
async fn an_evicted_session_never_comes_back() {
    let Some(server) = start().await else { return };
    let store = MemcachedStore::connect(&format!("127.0.0.1:{}", server.port))
        .await
        .unwrap();
    let t = record::now();
    let mut record = Record::new(t, Some(t + time::Duration::hours(1)), None);
    record.user_id = Some("evictee".into());
    let key = SessionId::generate().store_key();
    store.insert(&key, &record).await.unwrap();
    // Evict everything, as memory pressure would.
    let mut admin = async_memcached::Client::new(format!("tcp://127.0.0.1:{}", server.port))
        .await
        .unwrap();
    admin.flush_all().await.unwrap();
    assert!(matches!(
        store.update(&key, &record, 1).await,
        Err(UpdateError::Missing)
    ));
    assert_eq!(
        store.load(&key).await.unwrap(),
        None,
        "no write brings an evicted session back"
    );
    assert!(store.list_for_user("evictee").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_session_lives_until_its_deadline_despite_memcached_s_coarse_clock() {
    let Some(server) = start().await else { return };
    let store = MemcachedStore::connect(&format!("127.0.0.1:{}", server.port))
        .await
        .unwrap();
    // Memcached's clock ticks once a second at its own phase, so a TTL without slack can
    // end up to a second early. Three sessions started at different phases of that tick,
    // each read until just before its deadline of 1.95 s.
    for phase in 0..3 {
        tokio::time::sleep(Duration::from_millis(330 * phase)).await;
        let t = record::now();
        let deadline = t + time::Duration::milliseconds(1950);
        let record = Record::new(t, Some(deadline), None);
        let key = SessionId::generate().store_key();
        store.insert(&key, &record).await.unwrap();
        while record::now() < deadline - time::Duration::milliseconds(100) {
            assert!(
                store.load(&key).await.unwrap().is_some(),
                "a session was gone {} ms before its deadline",
                (deadline - record::now()).whole_milliseconds()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
