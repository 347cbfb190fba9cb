//! Same-session concurrency: exact increments, no resurrection after logout, and one
//! shared manager across the worker threads of a real server.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::App;
use cloakroom::conformance::CountingStore;
use cloakroom::{SessionConfig, SessionStore};
use cloakroom_actix::SessionMiddleware;
use serde_json::{json, Value};

use crate::support::*;

#[actix_web::test]
async fn concurrent_increments_are_exact_on_memory_and_sqlite() {
    let memory = CountingStore::new(memory()).with_update_delay(Duration::from_millis(2));
    on_memory_and_sqlite(Arc::new(memory), concurrent_increments_are_exact).await;
}

async fn concurrent_increments_are_exact(store: Arc<dyn SessionStore>) {
    let app = app!(manager(store, SessionConfig::default()));
    let cookie = send(&app, post("/incr/n", None, Value::Null))
        .await
        .cookie();
    const WRITERS: u64 = 40;
    // Every writer reads the same version, then waits, so their commits collide.
    let replies = futures_util::future::join_all((0..WRITERS).map(|_| {
        send(
            &app,
            post("/incr/n?delay_ms=20", Some(&cookie), Value::Null),
        )
    }))
    .await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    assert_eq!(read(&app, "/get/n", &cookie).await, json!(WRITERS + 1));
}

#[actix_web::test]
async fn logout_racing_a_slow_writer_does_not_resurrect_on_memory_and_sqlite() {
    on_memory_and_sqlite(memory(), logout_racing_a_slow_writer_does_not_resurrect).await;
}

async fn logout_racing_a_slow_writer_does_not_resurrect(store: Arc<dyn SessionStore>) {
    let counting = CountingStore::new(Arc::clone(&store));
    let counts = counting.counts();
    let app = app!(manager(Arc::new(counting), SessionConfig::default()));
    let cookie = send(&app, post("/set/a", None, json!(1))).await.cookie();
    let answered = counts.loads_answered();
    // The writer loads the session, then the logout commits while it waits. The logout
    // waits for that load, not a fixed head start, which a loaded machine can outlast.
    let (write, logout) = futures_util::future::join(
        send(&app, post("/set/b?delay_ms=200", Some(&cookie), json!(2))),
        async {
            counts.wait_for_loads_answered(answered + 1).await;
            send(&app, post("/logout", Some(&cookie), Value::Null)).await
        },
    )
    .await;
    assert_eq!(logout.status, StatusCode::OK);
    assert!(
        write.set_cookie.is_empty(),
        "the late writer sends no cookie: {:?}",
        write.set_cookie
    );
    assert_eq!(live_sessions(&store).await, 0, "nothing came back");
    assert_eq!(read(&app, "/get/a", &cookie).await, Value::Null);
    assert_eq!(read(&app, "/get/b", &cookie).await, Value::Null);
}

/// One HTTP/1.1 request over a fresh loopback connection: (status, Set-Cookie, body).
fn http_request(
    address: std::net::SocketAddr,
    request_line: &str,
    cookie: Option<&str>,
) -> (u16, Option<String>, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let cookie = cookie.map_or(String::new(), |c| format!("cookie: {c}\r\n"));
    write!(
        stream,
        "{request_line} HTTP/1.1\r\nhost: test\r\n{cookie}content-length: 0\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a whole response");
    let status = head[9..12].parse().expect("a status");
    let set_cookie = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, value)| value.trim().split(';').next().unwrap().to_owned());
    (status, set_cookie, body.to_owned())
}

#[actix_web::test]
async fn increments_from_every_worker_thread_of_a_real_server_are_exact() {
    // Workers are separate threads, each with its own App: they must share one manager
    // (store and commit queue) through the cloned middleware.
    let sessions = SessionMiddleware::from_manager(manager(
        Arc::new(CountingStore::new(memory()).with_update_delay(Duration::from_millis(2))),
        SessionConfig::default(),
    ));
    let server =
        actix_web::HttpServer::new(move || App::new().wrap(sessions.clone()).configure(routes))
            .workers(4)
            .disable_signals()
            .bind(("127.0.0.1", 0))
            .expect("bind a loopback port");
    let address = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);

    const CLIENTS: usize = 8;
    const EACH: usize = 5;
    let total = actix_web::rt::task::spawn_blocking(move || {
        let (status, cookie, _) = http_request(address, "POST /incr/n", None);
        assert_eq!(status, 200);
        let cookie = cookie.expect("a session cookie");
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let cookie = cookie.clone();
                std::thread::spawn(move || {
                    for _ in 0..EACH {
                        let reply = http_request(address, "POST /incr/n?delay_ms=5", Some(&cookie));
                        assert_eq!(reply.0, 200, "{}", reply.2);
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().expect("a client thread");
        }
        http_request(address, "GET /get/n", Some(&cookie)).2
    })
    .await
    .unwrap();
    handle.stop(true).await;
    assert_eq!(total, (CLIENTS * EACH + 1).to_string());
}
