//! `BENCHMARKS.md` as a whole.

use std::fmt::Write;

use crate::results::Results;
use crate::scenario::Library;

use super::checks::checks;
use super::tables::{round_trip_table, throughput_table};

/// Renders `BENCHMARKS.md`. `chart` is the chart's path relative to it; `command` the
/// command that regenerates it.
pub fn markdown(results: &Results, chart: &str, command: &str) -> String {
    let mut out = String::new();
    let m = &results.machine;
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "cloakroom side by side with tower-sessions 0.15 (0.14 for its SQLite, PostgreSQL and Redis stores, which are \
         published for tower-sessions-core 0.14; the two differ only in a `rand` bump), actix-session 0.11 on actix-web 4 \
         (beside it, cloakroom on actix-web through `cloakroom-actix`), and **the floor**: a bare axum handler doing the same store operations directly, with no session library. \
         Every library serves the same five routes with the same behaviour, on the same servers, in the same run.\n"
    );
    let _ = writeln!(
        out,
        "Regenerate this file (and `{chart}`) with:\n\n```sh\n{command}\n```\n"
    );
    let _ = writeln!(
        out,
        "This run: {} mode, {:.0} s. Machine: {}, {} cores, {:.0} GiB, Linux {}, {}. Servers: {}.\n",
        if results.quick { "quick" } else { "full" },
        results.seconds,
        m.cpu,
        m.cores,
        m.memory_gib,
        m.kernel,
        m.rustc,
        m.servers.join(", ")
    );
    out.push_str("## Targets\n\n| target | result |\n|---|---|\n");
    for check in checks(results) {
        let result = if check.checked == 0 {
            "not measured".to_owned()
        } else if check.misses.is_empty() {
            format!("met ({} cells)", check.checked)
        } else {
            format!(
                "**missed** in {} of {}: {}",
                check.misses.len(),
                check.checked,
                check.misses.join("; ")
            )
        };
        let _ = writeln!(out, "| {} | {result} |", check.target);
    }
    let _ = writeln!(out, "\n![Throughput relative to the floor]({chart})\n");
    out.push_str(
        "## What is measured\n\n\
         | scenario | request |\n|---|---|\n\
         | S1 untouched | `GET /untouched`, a handler that never touches the session, no cookie |\n\
         | S2 read | `GET /read` with the cookie of a seeded session: read `counter` |\n\
         | S3 write | `POST /write`: read `counter`, write it plus one |\n\
         | S4 login | `POST /rotate`: give the session a new ID (the client follows the new cookie) |\n\
         | S5 contended | `POST /write` from 32 clients at once on one session |\n\n\
         Each library uses its idiomatic API: cloakroom `Session::update` for the increment (re-run on a concurrent \
         change, so nothing is lost), tower-sessions and actix-session `get` then `insert`, and `cycle_id` / `renew` \
         for S4. **cloakroom (actix-web)** is cloakroom on actix-web through `cloakroom-actix` (its middleware and \
         `Session` extractor), with the same handlers and the same session manager set-up as the cloakroom axum \
         app, on the Redis and cookie stores, where actix-session runs: it is served exactly as actix-session is \
         (same actix-web version, test service, workers and server settings), so their ratio is the session \
         libraries' alone. Its target is actix-session; the \"fastest peer\" target stays cloakroom on axum's, \
         because comparing an actix-web app with tower-sessions on axum would measure the frameworks, not the \
         session libraries. Sessions are seeded with `counter = 0` and `user = \"bench\"`. The floor keeps the same data as JSON: \
         a `HashMap` under a `Mutex` (memory); `SELECT` / `INSERT … ON CONFLICT` / `UPDATE … SET id` on a table \
         with the same pool settings (SQLite, PostgreSQL); `GET` / `SET EX` / `RENAMENX` with the same Redis client \
         cloakroom uses (redis-rs `ConnectionManager`); XChaCha20-Poly1305 sealing of the JSON (cookie). The floor \
         does no expiry bookkeeping, no rotation safety and no concurrency control, so it loses S5 writes by design.\n\n\
         - **In process**: axum apps through tower `oneshot`, actix-web through `actix_web::test::call_service`, \
         all of one store's apps (and bare axum, for S1) on one thread of actix-web's runtime, each \
         warmed up, then their timed samples taken in turns (a sample of one, then one of the next, the \
         order rotated and reversed from turn to turn), so the machine's drift falls on every library \
         alike; the median sample reported. S5 runs 32 concurrent writers on that thread, \
         interleaving at every store await, one app after another.\n\
         - **Over HTTP**: each app served on loopback (axum on a 2-worker tokio runtime, actix-web with 2 \
         workers, one cloakroom-actix middleware shared by both), loaded by wrk for a fixed time: S1-S4 with 8 connections, each on its own wrk thread with its own \
         session; S5 with 32 connections on one session. One store's servers are up together and each \
         scenario's wrk runs go one library after another, in an order that varies by round and scenario. S5's acknowledged writes are counted by the server, \
         so requests still in flight when wrk stops are not miscounted.\n\
         - **Round trips**: the store connection goes through a counting TCP proxy that parses the client's half \
         of the protocol: Redis commands (RESP arrays; commands a Lua script runs inside the server are not \
         seen), PostgreSQL statements (`Query` and `Execute` messages); and round trips (client sends that \
         follow a server reply), which also show connection-pool health checks. 64 requests per scenario \
         after one unmeasured one.\n\
         - **Memory**: one million sessions created through each library's own `/seed` route in a fresh process; \
         live heap bytes counted by a counting global allocator, and resident-set growth.\n\n",
    );
    for (title, rows) in [
        ("In process", &results.in_process),
        ("Over HTTP (wrk, loopback)", &results.http),
    ] {
        let mut spreads: Vec<f64> = rows.iter().map(|row| row.spread).collect();
        spreads.sort_by(f64::total_cmp);
        let spread = spreads.get(spreads.len() / 2).copied().unwrap_or(1.0);
        let worst = spreads.last().copied().unwrap_or(1.0);
        let _ = writeln!(
            out,
            "## {title}\n\nRequests per second (higher is better), the median of the rounds. peer/cloakroom \
             below 1 means cloakroom is faster; cloakroom (actix-web)/actix-session at 1 or above \
             means cloakroom on actix-web is at least as fast as actix-session. Noise on this machine: the fastest round of a cell \
             beat its slowest by {:.0}% at the median cell, {:.0}% at the worst, so differences \
             within that are not findings.\n",
            (spread - 1.0) * 100.0,
            (worst - 1.0) * 100.0
        );
        throughput_table(&mut out, rows);
        out.push('\n');
    }
    out.push_str(
        "## Round trips per request\n\nCommands (Redis) or statements (PostgreSQL) per request, and in brackets \
         the round trips. Every PostgreSQL library here runs on sqlx, which pings a connection when it returns \
         to the pool (after the response, off the request's path): that is the second round trip of each \
         statement. On Redis, S5's 32 concurrent requests share pipelined round trips.\n\n",
    );
    round_trip_table(&mut out, &results.round_trips);
    // The explanations are prose kept beside the code, measured by hand (callgrind,
    // INFO commandstats) and revised when a lever lands.
    out.push('\n');
    out.push_str(include_str!("why.md"));
    out.push_str("\n## Memory per session\n\ncloakroom's `MemoryStore` keeps each record packed (values in a boxed slice, not a B-tree node with \
         room for eleven entries) beside an expiry index, so expired sessions are evicted, and a per-user index; \
         tower-sessions' keeps expired records until something deletes them.\n\n| store | sessions | heap bytes/session | RSS bytes/session | vs cloakroom (heap) |\n|---|---:|---:|---:|---:|\n");
    let ours = results
        .memory
        .iter()
        .find(|row| row.library == Library::Cloakroom)
        .map(|row| row.heap_bytes);
    for row in &results.memory {
        let ratio = ours.map_or("-".to_owned(), |ours| {
            format!("{:.2}", row.heap_bytes / ours)
        });
        let name = match row.library {
            Library::Floor => "floor (`HashMap<String, Map>`)".to_owned(),
            library => format!("{} `MemoryStore`", library.name()),
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {:.0} | {:.0} | {ratio} |",
            row.sessions, row.heap_bytes, row.rss_bytes
        );
    }
    out
}
