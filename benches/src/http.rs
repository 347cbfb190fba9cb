//! Over-HTTP mode: each target served on loopback by a real server built from the same
//! handlers, loaded by wrk for a bounded time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::http::Method;

use crate::env::Env;
use crate::inprocess::cookie_pair;
use crate::results::{Contended, Throughput};
use crate::scenario::routes::{READ, SEED, WRITE};
use crate::scenario::{Library, Scenario, StoreKind, Target};

/// Write requests a server answered 2xx (S5's acknowledged writes, counted server-side
/// so requests still in flight when wrk stops are not missed). One per server: a store's
/// servers are up together, and a late write must not count for the next one's run.
/// Leaked, a few bytes per server, so that counting takes no reference-count traffic
/// between the server's worker threads on every request.
type Acknowledged = &'static AtomicU64;

/// How hard and how long to load each scenario.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Seconds per wrk run.
    pub seconds: u32,
    /// Runs per target and scenario (one store's targets side by side, in turns that
    /// vary by round and scenario), combined by median.
    pub rounds: usize,
    /// Server worker threads.
    pub workers: usize,
    /// Connections for S1-S4 (each with its own session, one wrk thread each).
    pub connections: usize,
}

impl Load {
    /// The quick mode's load.
    pub const QUICK: Load = Load {
        seconds: 1,
        rounds: 2,
        workers: 2,
        connections: 8,
    };
    /// The full mode's load.
    pub const FULL: Load = Load {
        seconds: 4,
        rounds: 3,
        workers: 2,
        connections: 8,
    };
}

/// A server running on its own thread.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    acknowledged: Acknowledged,
    stop: Box<dyn FnOnce() + Send>,
    thread: JoinHandle<()>,
}

impl Server {
    /// Stops it and waits for its thread.
    pub fn stop(self) {
        (self.stop)();
        let _ = self.thread.join();
    }
}

/// Starts `target`'s server on a free loopback port.
pub fn serve(target: Target, env: &Env, workers: usize) -> Result<Server, String> {
    let (ready_tx, ready_rx) =
        mpsc::channel::<Result<(SocketAddr, Box<dyn FnOnce() + Send>), String>>();
    let env = env.clone();
    let acknowledged: Acknowledged = Box::leak(Box::default());
    let thread = if target.library.on_actix() {
        std::thread::spawn(move || {
            let serving = serve_actix(target, env, workers, acknowledged, ready_tx);
            actix_web::rt::System::new().block_on(serving)
        })
    } else {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(serve_axum(target, env, acknowledged, ready_tx));
        })
    };
    let (addr, stop) = ready_rx
        .recv()
        .map_err(|_| format!("{}: the server thread died", target.slug()))??;
    Ok(Server {
        addr,
        acknowledged,
        stop,
        thread,
    })
}

type Ready = mpsc::Sender<Result<(SocketAddr, Box<dyn FnOnce() + Send>), String>>;

async fn serve_axum(target: Target, env: Env, acknowledged: Acknowledged, ready: Ready) {
    let started = async {
        if target.store == StoreKind::Redis {
            env.flush_redis().await?;
        }
        let router = crate::axum_apps::build(target, &env)
            .await
            .map_err(|error| format!("{}: {error}", target.slug()))?
            .layer(axum::middleware::from_fn_with_state(
                acknowledged,
                count_axum_writes,
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|error| error.to_string())?;
        Ok::<_, String>((router, listener))
    };
    let (router, listener) = match started.await {
        Ok(started) => started,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let addr = listener.local_addr().expect("bound");
    let stop: Box<dyn FnOnce() + Send> = Box::new(move || {
        let _ = stop_tx.send(());
    });
    let _ = ready.send(Ok((addr, stop)));
    let _ = axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = stop_rx.await;
        })
        .await;
}

async fn count_axum_writes(
    axum::extract::State(acknowledged): axum::extract::State<Acknowledged>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let write = request.method() == Method::POST && request.uri().path() == WRITE;
    let response = next.run(request).await;
    if write && response.status().is_success() {
        acknowledged.fetch_add(1, Ordering::SeqCst);
    }
    response
}

async fn serve_actix(
    target: Target,
    env: Env,
    workers: usize,
    acknowledged: Acknowledged,
    ready: Ready,
) {
    use crate::actix_apps::{
        actix_session_routes, cloakroom_middleware, cloakroom_routes, cookie_store, middleware,
    };
    use actix_web::dev::Service;
    use actix_web::{App, HttpServer};
    use futures::FutureExt;

    // Every actix-web app here runs with the same server settings and the same S5 write
    // counter around it; only the app inside differs.
    macro_rules! server {
        ($app:expr) => {{
            HttpServer::new(move || {
                $app.wrap_fn(move |request, service| {
                    let write = request.method() == actix_web::http::Method::POST
                        && request.path() == WRITE;
                    service.call(request).map(move |response| {
                        if let Ok(response) = &response {
                            if write && response.status().is_success() {
                                acknowledged.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        response
                    })
                })
            })
            .workers(workers)
            .disable_signals()
            .shutdown_timeout(1)
        }};
    }
    let fail = |error: String| {
        let _ = ready.send(Err(format!("{}: {error}", target.slug())));
    };
    let listener = match std::net::TcpListener::bind("127.0.0.1:0") {
        Ok(listener) => listener,
        Err(error) => return fail(error.to_string()),
    };
    let addr = listener.local_addr().expect("bound");
    if target.store == StoreKind::Redis {
        if let Err(error) = env.flush_redis().await {
            return fail(error);
        }
    }
    let key = actix_web::cookie::Key::generate();
    let server = match (target.library, target.store) {
        (Library::CloakroomActix, store) => match cloakroom_middleware(store, &env).await {
            // One middleware for all workers: one store connection and one commit queue.
            Ok(sessions) => server!(App::new()
                .wrap(sessions.clone())
                .configure(cloakroom_routes))
            .listen(listener)
            .map(|server| server.run()),
            Err(error) => return fail(error.to_string()),
        },
        (Library::ActixSession, StoreKind::Redis) => {
            match crate::actix_apps::redis_store(&env).await {
                Ok(store) => server!(App::new()
                    .wrap(middleware(store.clone(), &key))
                    .configure(actix_session_routes))
                .listen(listener)
                .map(|server| server.run()),
                Err(error) => return fail(error.to_string()),
            }
        }
        (Library::ActixSession, StoreKind::Cookie) => server!(App::new()
            .wrap(middleware(cookie_store(), &key))
            .configure(actix_session_routes))
        .listen(listener)
        .map(|server| server.run()),
        _ => return fail("not an actix-web target".into()),
    };
    let server = match server {
        Ok(server) => server,
        Err(error) => return fail(error.to_string()),
    };
    let handle = server.handle();
    let stop: Box<dyn FnOnce() + Send> = Box::new(move || {
        futures::executor::block_on(handle.stop(true));
    });
    let _ = ready.send(Ok((addr, stop)));
    let _ = server.await;
}

/// One HTTP/1.1 request on a fresh connection: (status, `name=value` of `Set-Cookie`, body).
pub fn request(
    addr: SocketAddr,
    post: bool,
    path: &str,
    cookie: Option<&str>,
) -> Result<(u16, Option<String>, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|error| error.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|error| error.to_string())?;
    let method = if post { "POST" } else { "GET" };
    let cookie = cookie.map_or(String::new(), |cookie| format!("Cookie: {cookie}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|error| error.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|error| error.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
    let cookie = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("set-cookie")
            .then(|| cookie_pair(value.trim()))
    });
    // Bodies here are tiny; a chunked one is "len\r\nbody\r\n0\r\n\r\n".
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.lines().nth(1).unwrap_or("").to_owned()
    } else {
        body.to_owned()
    };
    Ok((status, cookie, body))
}

fn seed(addr: SocketAddr) -> Result<String, String> {
    match request(addr, true, SEED, None)? {
        (200..=299, Some(cookie), _) => Ok(cookie),
        (status, _, body) => Err(format!("seeding failed: {status} {body}")),
    }
}

/// wrk's summary, as printed by the script's `done`.
#[derive(Debug, serde::Deserialize)]
struct WrkSummary {
    requests: u64,
    duration_us: u64,
    status: u64,
    socket: u64,
    p50_us: f64,
}

const DONE: &str = r#"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK {\"requests\":%d,\"duration_us\":%d,\"status\":%d,\"socket\":%d,\"p50_us\":%d}\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50)))
end
"#;

/// The wrk script for `scenario`, with one session cookie per connection (S2-S4) or one
/// for all (S5).
fn script(scenario: Scenario, cookies: &[String]) -> String {
    let method = if scenario.is_post() { "POST" } else { "GET" };
    let path = scenario.path();
    let mut lua = match scenario {
        Scenario::Untouched => format!("wrk.method = \"{method}\"\nwrk.path = \"{path}\"\n"),
        Scenario::Contended => format!(
            "wrk.method = \"{method}\"\nwrk.path = \"{path}\"\nwrk.headers[\"Cookie\"] = [[{}]]\n",
            cookies[0]
        ),
        Scenario::Read | Scenario::Write | Scenario::Login => {
            // One wrk thread per connection, so a thread's cookie is its connection's.
            let list: Vec<String> = cookies
                .iter()
                .map(|cookie| format!("[[{cookie}]]"))
                .collect();
            let mut lua = format!(
                "local cookies = {{ {} }}\nlocal assigned = 0\n\
                 function setup(thread)\n  assigned = assigned + 1\n  thread:set(\"cookie\", cookies[assigned])\nend\n",
                list.join(", ")
            );
            if scenario == Scenario::Login {
                lua.push_str(&format!(
                    "function request()\n  return wrk.format(\"{method}\", \"{path}\", {{ [\"Cookie\"] = cookie }})\nend\n\
                     function response(status, headers, body)\n  \
                       local set = headers[\"set-cookie\"] or headers[\"Set-Cookie\"]\n  \
                       if set then cookie = set:match(\"^([^;]+)\") end\nend\n"
                ));
            } else {
                lua.push_str(&format!(
                    "function init(args)\n  local fixed = wrk.format(\"{method}\", \"{path}\", {{ [\"Cookie\"] = cookie }})\n  \
                       request = function() return fixed end\nend\n"
                ));
            }
            lua
        }
    };
    lua.push_str(DONE);
    lua
}

fn wrk(
    addr: SocketAddr,
    scenario: Scenario,
    cookies: &[String],
    threads: usize,
    connections: usize,
    seconds: u32,
    scratch: &std::path::Path,
) -> Result<WrkSummary, String> {
    let path = scratch.join("bench.lua");
    std::fs::write(&path, script(scenario, cookies)).map_err(|error| error.to_string())?;
    let output = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("--timeout")
        .arg("5s")
        .arg("-s")
        .arg(&path)
        .arg(format!("http://{addr}/"))
        .output()
        .map_err(|error| format!("running wrk (apt-get install wrk): {error}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("WRK "))
        .ok_or_else(|| {
            format!(
                "wrk printed no summary: {}{}",
                stdout,
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    serde_json::from_str(line).map_err(|error| error.to_string())
}

/// Loads every scenario on `targets` (one store's libraries) over HTTP, side by side: all
/// their servers up at once, and each scenario's wrk runs taken one library after
/// another, so the machine's drift falls on every library alike. `round` rotates who
/// goes first.
pub fn run_together(
    targets: &[Target],
    env: &Env,
    load: Load,
    round: usize,
) -> Result<Vec<Throughput>, String> {
    let mut servers = Vec::with_capacity(targets.len());
    for &target in targets {
        match serve(target, env, load.workers) {
            Ok(server) => servers.push((target, server)),
            Err(error) => {
                servers.into_iter().for_each(|(_, server)| server.stop());
                return Err(error);
            }
        }
    }
    let results = load_side_by_side(&servers, env, load, round);
    servers.into_iter().for_each(|(_, server)| server.stop());
    results
}

fn load_side_by_side(
    servers: &[(Target, Server)],
    env: &Env,
    load: Load,
    round: usize,
) -> Result<Vec<Throughput>, String> {
    let mut results = Vec::new();
    for (number, &scenario) in Scenario::ALL.iter().enumerate() {
        let lanes: Vec<&(Target, Server)> = servers
            .iter()
            .filter(|(target, _)| target.scenarios().contains(&scenario))
            .collect();
        for k in 0..lanes.len() {
            let (target, server) = lanes[crate::inprocess::turn(k, lanes.len(), round + number)];
            results.push(load_scenario(*target, env, load, server, scenario)?);
        }
    }
    Ok(results)
}

/// One wrk run of `scenario` on the server at `addr`.
fn load_scenario(
    target: Target,
    env: &Env,
    load: Load,
    server: &Server,
    scenario: Scenario,
) -> Result<Throughput, String> {
    let (addr, acknowledged_writes) = (server.addr, server.acknowledged);
    let (threads, connections, sessions) = match scenario {
        Scenario::Untouched => (load.connections, load.connections, 0),
        Scenario::Contended => (4, crate::inprocess::WRITERS, 1),
        _ => (load.connections, load.connections, load.connections),
    };
    let cookies = (0..sessions)
        .map(|_| seed(addr))
        .collect::<Result<Vec<_>, _>>()?;
    let acknowledged_before = acknowledged_writes.load(Ordering::SeqCst);
    let summary = wrk(
        addr,
        scenario,
        &cookies,
        threads,
        connections,
        load.seconds,
        &env.scratch,
    )?;
    let contended = if scenario == Scenario::Contended {
        // Let requests wrk abandoned at its deadline finish before counting.
        let mut acknowledged = acknowledged_writes.load(Ordering::SeqCst);
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = acknowledged_writes.load(Ordering::SeqCst);
            if now == acknowledged {
                break;
            }
            acknowledged = now;
        }
        let (status, _, body) = request(addr, false, READ, Some(&cookies[0]))?;
        let survived = body
            .trim()
            .parse()
            .map_err(|_| format!("reading the counter failed: {status} {body:?}"))?;
        Some(Contended {
            acknowledged: acknowledged - acknowledged_before,
            survived,
        })
    } else {
        None
    };
    let result = Throughput {
        target,
        scenario,
        per_second: summary.requests as f64 / (summary.duration_us as f64 / 1e6),
        median_us: summary.p50_us,
        failed: summary.status + summary.socket,
        contended,
        spread: 1.0,
    };
    eprintln!(
        "  http       {:<32} {:<13} {:>10.0}/s{}",
        target.slug(),
        scenario.label(),
        result.per_second,
        if result.failed > 0 {
            format!("  ({} failed)", result.failed)
        } else {
            String::new()
        }
    );
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_script_follows_the_new_cookie() {
        let lua = script(Scenario::Login, &["id=a".into(), "id=b".into()]);
        assert!(lua.contains("[[id=a]], [[id=b]]"));
        assert!(lua.contains("function response"));
        assert!(!script(Scenario::Read, &["id=a".into()]).contains("function response"));
    }
}
