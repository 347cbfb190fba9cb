//! Shared test support: reaching the test servers (skipping loudly when they are not there,
//! failing under `CLOAKROOM_REQUIRE_SERVICES=1`), unique tables, and a TCP proxy that can
//! cut the connection to a real server to simulate an outage without stopping the shared
//! server other tests use.
#![allow(dead_code)]

pub mod scenarios;
#[macro_use]
pub mod sql_tests;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Reports an unreachable server: a loud skip, or a failure when services are required.
pub fn unreachable(what: &str, url: &str, error: &dyn std::fmt::Display) {
    cloakroom::testing::skip(&format!(
        "{what} at {url} is unreachable ({error}); start it with scripts/services.sh"
    ));
}

pub fn postgres_url() -> String {
    std::env::var("CLOAKROOM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub fn mysql_url() -> String {
    std::env::var("CLOAKROOM_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// The PostgreSQL test URL with `schema` first on the search path, so that unqualified
/// table names land in it.
pub fn postgres_url_in(schema: &str) -> String {
    let url = postgres_url();
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}options=-c%20search_path%3D{schema}")
}

/// The MySQL test URL with `database` as the default database.
pub fn mysql_url_in(database: &str) -> String {
    let url = mysql_url();
    let (url, query) = url.split_once('?').unwrap_or((&url, ""));
    let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{base}/{database}{query}")
}

/// A table name no other test uses.
pub fn unique_table() -> String {
    let handle = cloakroom::SessionId::generate().store_key().to_hex();
    format!("ct_{}", &handle[..16])
}

/// Tables created by a test, dropped when it ends.
#[derive(Clone, Default)]
pub struct Tables(Arc<Mutex<Vec<String>>>);

impl Tables {
    pub fn add(&self) -> String {
        let name = unique_table();
        self.0.lock().unwrap().push(name.clone());
        name
    }

    pub fn names(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A TCP proxy in front of a real server. `cut` drops every connection and refuses new
/// ones (the server looks down); `restore` accepts again on the same port.
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Self {
            addr,
            upstream,
            tasks: Arc::default(),
            acceptor: Mutex::new(None),
        };
        proxy.accept_on(listener);
        proxy
    }

    fn accept_on(&self, listener: TcpListener) {
        let (upstream, tasks) = (self.upstream, Arc::clone(&self.tasks));
        let acceptor = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(task);
            }
        });
        *self.acceptor.lock().unwrap() = Some(acceptor);
    }

    pub fn cut(&self) {
        if let Some(acceptor) = self.acceptor.lock().unwrap().take() {
            acceptor.abort();
        }
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub async fn restore(&self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("rebind the proxy port");
        self.accept_on(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
