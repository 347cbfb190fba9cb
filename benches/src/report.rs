//! `BENCHMARKS.md` and its chart, from a run's [`Results`].

use std::collections::BTreeMap;
use std::fmt::Write;

use plotters::prelude::*;

use crate::results::{Results, RoundTrips, Throughput};
use crate::scenario::{Library, Scenario, StoreKind, Target};

/// The libraries in table order.
const COLUMNS: [Library; 5] = [
    Library::Cloakroom,
    Library::CloakroomActix,
    Library::TowerSessions,
    Library::ActixSession,
    Library::Floor,
];

/// The floor for cloakroom/floor, and the bound the issue sets.
const FLOOR_TARGET: f64 = 0.8;
/// S1 against bare axum: within 3%.
const UNTOUCHED_TARGET: f64 = 0.97;
/// cloakroom on actix-web against actix-session on the same runtime.
const ACTIX_TARGET: f64 = 1.0;

fn find(
    rows: &[Throughput],
    library: Library,
    store: StoreKind,
    scenario: Scenario,
) -> Option<&Throughput> {
    rows.iter()
        .find(|row| row.target == Target::new(library, store) && row.scenario == scenario)
}

fn rate(value: f64) -> String {
    if value >= 100.0 {
        let whole = value.round() as u64;
        let text = whole.to_string();
        let mut grouped = String::new();
        for (i, digit) in text.chars().enumerate() {
            if i > 0 && (text.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        grouped
    } else {
        format!("{value:.1}")
    }
}

/// A check against one of the issue's targets.
#[derive(Debug)]
pub struct Check {
    /// What is checked.
    pub target: String,
    /// Where it was missed (empty: met).
    pub misses: Vec<String>,
    /// How many cells were checked.
    pub checked: usize,
}

/// Evaluates the issue's targets on `results`.
pub fn checks(results: &Results) -> Vec<Check> {
    let mut peer = Check {
        target: "at least 1.0x the fastest peer (every store and scenario with a peer)".into(),
        misses: vec![],
        checked: 0,
    };
    let mut untouched = Check {
        target: "S1 untouched within 3% of bare axum".into(),
        misses: vec![],
        checked: 0,
    };
    let mut floor = Check {
        target: format!("cloakroom/floor at least {FLOOR_TARGET} (every store, S1-S4)"),
        misses: vec![],
        checked: 0,
    };
    let mut actix = Check {
        target: format!(
            "cloakroom on actix-web at least {ACTIX_TARGET:.1}x actix-session (Redis and cookie, every scenario)"
        ),
        misses: vec![],
        checked: 0,
    };
    let mut lost = Check {
        target: "S5 contended: zero lost writes for cloakroom (on axum and on actix-web)".into(),
        misses: vec![],
        checked: 0,
    };
    for (mode, rows) in [("in-process", &results.in_process), ("HTTP", &results.http)] {
        let bare = find(
            rows,
            Library::BareAxum,
            StoreKind::None,
            Scenario::Untouched,
        );
        for store in StoreKind::ALL {
            for scenario in Scenario::ALL {
                let Some(ours) = find(rows, Library::Cloakroom, store, scenario) else {
                    continue;
                };
                let where_ = format!("{mode} {} {}", store.name(), scenario.label());
                let fastest = COLUMNS
                    .iter()
                    .filter(|library| library.is_peer())
                    .filter_map(|&library| find(rows, library, store, scenario))
                    .map(|row| row.per_second)
                    .fold(None, |best: Option<f64>, value| {
                        Some(best.map_or(value, |best| best.max(value)))
                    });
                if let Some(fastest) = fastest {
                    peer.checked += 1;
                    if ours.per_second < fastest {
                        peer.misses
                            .push(format!("{where_}: {:.2}x", ours.per_second / fastest));
                    }
                }
                if scenario == Scenario::Untouched {
                    if let Some(bare) = bare {
                        untouched.checked += 1;
                        let ratio = ours.per_second / bare.per_second;
                        if ratio < UNTOUCHED_TARGET {
                            untouched.misses.push(format!("{where_}: {ratio:.3}x"));
                        }
                    }
                }
                if scenario != Scenario::Contended {
                    if let Some(base) = find(rows, Library::Floor, store, scenario) {
                        floor.checked += 1;
                        let ratio = ours.per_second / base.per_second;
                        if ratio < FLOOR_TARGET {
                            floor.misses.push(format!("{where_}: {ratio:.2}"));
                        }
                    }
                }
            }
        }
        for store in StoreKind::ALL {
            for scenario in Scenario::ALL {
                let where_ = format!("{mode} {} {}", store.name(), scenario.label());
                // cloakroom on actix-web against actix-session, like for like: the same
                // actix-web runtime, workers and test service, so the ratio is the session
                // libraries' alone.
                if let (Some(ours), Some(peer)) = (
                    find(rows, Library::CloakroomActix, store, scenario),
                    find(rows, Library::ActixSession, store, scenario),
                ) {
                    actix.checked += 1;
                    let ratio = ours.per_second / peer.per_second;
                    if ratio < ACTIX_TARGET {
                        actix.misses.push(format!("{where_}: {ratio:.2}x"));
                    }
                }
                for library in [Library::Cloakroom, Library::CloakroomActix] {
                    // Client-side state cannot merge concurrent writes: each response's
                    // cookie replaces the last, so S5 on cookies measures throughput only.
                    let Some(contended) = find(rows, library, store, scenario)
                        .and_then(|row| row.contended)
                        .filter(|_| store != StoreKind::Cookie)
                    else {
                        continue;
                    };
                    lost.checked += 1;
                    if contended.lost() > 0 {
                        let on = if library == Library::CloakroomActix {
                            " (actix-web)"
                        } else {
                            ""
                        };
                        lost.misses
                            .push(format!("{where_}{on}: {} lost", contended.lost()));
                    }
                }
            }
        }
    }
    let mut trips = Check {
        target:
            "Redis: S2 read exactly 1 round trip, S3 write exactly 2 (cloakroom on axum and on actix-web)"
                .into(),
        misses: vec![],
        checked: 0,
    };
    for library in [Library::Cloakroom, Library::CloakroomActix] {
        for (scenario, expected) in [(Scenario::Read, 1.0), (Scenario::Write, 2.0)] {
            if let Some(row) = results.round_trips.iter().find(|row| {
                row.target == Target::new(library, StoreKind::Redis) && row.scenario == scenario
            }) {
                trips.checked += 1;
                if (row.per_request - expected).abs() > 1e-9 {
                    trips.misses.push(format!(
                        "{} {}: {:.2}",
                        library.name(),
                        scenario.label(),
                        row.per_request
                    ));
                }
            }
        }
    }
    vec![peer, actix, untouched, trips, floor, lost]
}

/// `| a | b |` and its alignment line, the first `left` columns left-aligned.
fn header(out: &mut String, columns: &[&str], left: usize) {
    let _ = writeln!(out, "| {} |", columns.join(" | "));
    let align: Vec<&str> = (0..columns.len())
        .map(|i| if i < left { "---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "|{}|", align.join("|"));
}

fn throughput_table(out: &mut String, rows: &[Throughput]) {
    let mut columns = vec!["store", "scenario"];
    columns.extend(COLUMNS.iter().map(|library| library.name()));
    columns.extend([
        "peer/cloakroom",
        "cloakroom/floor",
        "cloakroom (actix-web)/actix-session",
    ]);
    header(out, &columns, 2);
    for store in StoreKind::ALL {
        for scenario in Scenario::ALL {
            // A row for every cell either cloakroom ran in (a filtered run may have only
            // one of them); the ratios need their own cloakroom.
            let ours = find(rows, Library::Cloakroom, store, scenario);
            if ours.is_none() && find(rows, Library::CloakroomActix, store, scenario).is_none() {
                continue;
            }
            let mut line = format!("| {} | {} ", store.name(), scenario.label());
            let mut ratios = Vec::new();
            for library in COLUMNS {
                match find(rows, library, store, scenario) {
                    Some(row) => {
                        let failed = if row.failed > 0 {
                            format!(" ({} failed)", row.failed)
                        } else {
                            String::new()
                        };
                        let _ = write!(line, "| {}{failed} ", rate(row.per_second));
                        if let Some(ours) = ours.filter(|_| library.is_peer()) {
                            ratios.push(format!(
                                "{} {:.2}",
                                short(library),
                                row.per_second / ours.per_second
                            ));
                        }
                    }
                    None => line.push_str("| - "),
                }
            }
            let peer = if ratios.is_empty() {
                "-".to_owned()
            } else {
                ratios.join(", ")
            };
            let floor = ours
                .zip(find(rows, Library::Floor, store, scenario))
                .map_or("-".to_owned(), |(ours, base)| {
                    format!("{:.2}", ours.per_second / base.per_second)
                });
            let actix = find(rows, Library::CloakroomActix, store, scenario)
                .zip(find(rows, Library::ActixSession, store, scenario))
                .map_or("-".to_owned(), |(ours, peer)| {
                    format!("{:.2}", ours.per_second / peer.per_second)
                });
            let _ = writeln!(line, "| {peer} | {floor} | {actix} |");
            out.push_str(&line);
        }
    }
    if let Some(bare) = find(
        rows,
        Library::BareAxum,
        StoreKind::None,
        Scenario::Untouched,
    ) {
        let _ = writeln!(
            out,
            "\nBare axum, no session layer, S1: {} req/s. cloakroom's S1 against it:",
            rate(bare.per_second)
        );
        let ratios: Vec<String> = StoreKind::ALL
            .iter()
            .filter_map(|&store| {
                find(rows, Library::Cloakroom, store, Scenario::Untouched)
                    .map(|row| format!("{} {:.3}", store.name(), row.per_second / bare.per_second))
            })
            .collect();
        let _ = writeln!(out, "{}.", ratios.join(", "));
    }
    out.push_str("\nS5 contended (32 writers incrementing one counter of one session):\n\n");
    out.push_str("| store | library | req/s | writes acknowledged | counter afterwards | lost |\n|---|---|---:|---:|---:|---:|\n");
    for store in StoreKind::ALL {
        for library in COLUMNS {
            if let Some(row) = find(rows, library, store, Scenario::Contended) {
                if store == StoreKind::Cookie {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | n/a | n/a | n/a: client-side, the last cookie wins |",
                        store.name(),
                        library.name(),
                        rate(row.per_second)
                    );
                } else if let Some(c) = row.contended {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {} | {} |",
                        store.name(),
                        library.name(),
                        rate(row.per_second),
                        c.acknowledged,
                        c.survived,
                        c.lost()
                    );
                }
            }
        }
    }
}

fn short(library: Library) -> &'static str {
    match library {
        Library::TowerSessions => "tower",
        Library::ActixSession => "actix",
        other => other.name(),
    }
}

fn round_trip_table(out: &mut String, rows: &[RoundTrips]) {
    let mut columns = vec!["store", "scenario"];
    columns.extend(COLUMNS.iter().map(|library| library.name()));
    header(out, &columns, 2);
    for store in [StoreKind::Redis, StoreKind::Postgres] {
        for scenario in Scenario::ALL {
            let cells: Vec<String> = COLUMNS
                .iter()
                .map(|&library| {
                    rows.iter()
                        .find(|row| {
                            row.target == Target::new(library, store) && row.scenario == scenario
                        })
                        .map_or("-".to_owned(), |row| {
                            format!("{:.2} ({:.2})", row.per_request, row.round_trips)
                        })
                })
                .collect();
            if cells.iter().all(|cell| cell == "-") {
                continue;
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                store.name(),
                scenario.label(),
                cells.join(" | ")
            );
        }
    }
}

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
         each on one thread; a warm-up, then timed samples, the median sample reported. S5 runs 32 concurrent \
         writers on that thread, interleaving at every store await.\n\
         - **Over HTTP**: each app served on loopback (axum on a 2-worker tokio runtime, actix-web with 2 \
         workers, one cloakroom-actix middleware shared by both), loaded by wrk for a fixed time: S1-S4 with 8 connections, each on its own wrk thread with its own \
         session; S5 with 32 connections on one session. S5's acknowledged writes are counted by the server, \
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
    out.push_str(
        "\n## Why the misses are where they are\n\n\
         Instruction counts below are per request, from `valgrind --tool=callgrind target/release/bench \
         profile TARGET SCENARIO --requests N` at two values of N, differenced (so setup cancels out).\n\n\
         - **S1 against bare axum, in process.** Any tower layer on an axum router costs a boxed route \
         service, a request extension and a response future; a bare in-process request is about 1 µs, so \
         that is tens of percent there and a few percent over HTTP, where the socket dominates. Measured: \
         8,985 instructions against bare axum's 6,378; of the 2,600 more, the request extension that hands \
         the handler its `Session` is 550 and the rest is the session handle's allocation, the cookie scan \
         and the response future. No store call, lock wait or commit step runs for an untouched request.\n\
         - **Redis writes.** cloakroom's write is a compare-and-set Lua script (that is what keeps S5 at zero \
         lost writes). `redis-cli INFO commandstats` after `bench profile cloakroom/Redis 3 --requests 20000`: \
         11.8 µs of Redis CPU per `EVALSHA`, of which the commands it runs are 2 µs and Lua's fixed cost the \
         rest (a script that only returns 1 costs 2 µs), against 0.9 µs per blind `SET`. On two cores shared \
         by the load generator, the app and Redis, that CPU is the gap to the peers' blind overwrites.\n\
         - **Redis reads.** One `HMGET` like the peers' one `GET`, but redis-rs parses each bulk reply \
         through its combinator parser (about 1,500 instructions a field), and the record is JSON with its \
         deadlines and client metadata. `load` now asks for five fields instead of seven.\n\
         - **SQL reads and writes.** One statement like tower-sessions', but cloakroom's row has eleven \
         columns read by name (deadlines, user, device, epoch: what the per-user index, the admin CLI and \
         server-side expiry need) where tower-sessions reads one blob, and liveness is judged by the \
         database clock in the statement.\n\
         - **S4 login.** The floor renames blindly (`RENAMENX`, one command). cloakroom loads the session \
         first (the handler's `cycle_id` needs it live) and renames in a script that checks both keys' \
         liveness and moves the user-index entry: 2 commands, where the peers need 3.\n\
         - **S5.** Where the peers are faster, they overwrite: see the lost writes above. cloakroom's \
         writers to one session take turns in-process, and the writer whose turn comes commits the change \
         sets queued behind it in one compare-and-set (group commit), so 32 contended writers cost a few \
         store round trips, not 32, and every increment counts. What remains is the re-application of each \
         change set and, on Redis, the script's CPU.\n\
         - **Cookie sessions against actix-session.** For S3, cloakroom runs 71,000 instructions against \
         the floor's 34,000 with the same cipher: opening the cookie (decrypt, then JSON of the whole \
         record) is 23,000, sealing it 19,000, rendering the `Set-Cookie` 3,500, and checking the new \
         cookie's size before the write is accepted (so an oversized session is a 413 at `insert`, never a \
         silently dropped cookie) 3,500. The record's deadlines, client metadata and key travel in the \
         cookie, which is what makes idle and absolute expiry enforceable client-side; actix-session's cookie carries the bare map.\n",
    );
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

/// Draws throughput relative to the floor, per store and scenario (S2-S4): one panel per
/// mode.
pub fn chart(results: &Results, path: &std::path::Path) -> Result<(), String> {
    let modes = [
        ("in process", &results.in_process),
        ("over HTTP", &results.http),
    ];
    let root = SVGBackend::new(path, (1300, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|error| error.to_string())?;
    let panels = root.split_evenly((2, 1));
    for ((mode, rows), panel) in modes.iter().zip(panels.iter()) {
        panel_chart(mode, rows, panel)?;
    }
    root.present().map_err(|error| error.to_string())
}

fn panel_chart<DB: DrawingBackend>(
    mode: &str,
    rows: &[Throughput],
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), String> {
    let libraries = [
        Library::Cloakroom,
        Library::CloakroomActix,
        Library::TowerSessions,
        Library::ActixSession,
    ];
    let colors = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0x17, 0xbe, 0xcf),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x2c, 0xa0, 0x2c),
    ];
    let mut groups: Vec<(String, BTreeMap<usize, f64>)> = Vec::new();
    for store in StoreKind::ALL {
        for scenario in [Scenario::Read, Scenario::Write, Scenario::Login] {
            let Some(base) = find(rows, Library::Floor, store, scenario) else {
                continue;
            };
            let bars: BTreeMap<usize, f64> = libraries
                .iter()
                .enumerate()
                .filter_map(|(i, &library)| {
                    find(rows, library, store, scenario)
                        .map(|row| (i, row.per_second / base.per_second))
                })
                .collect();
            groups.push((format!("{} {}", store.name(), &scenario.label()[..2]), bars));
        }
    }
    if groups.is_empty() {
        return Ok(());
    }
    let top = groups
        .iter()
        .flat_map(|(_, bars)| bars.values().copied())
        .fold(1.0_f64, f64::max)
        * 1.1;
    let error = |error: DrawingAreaErrorKind<DB::ErrorType>| error.to_string();
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{mode}: throughput / floor (1.0 = the bare store; higher is better)"),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(45)
        .build_cartesian_2d(0.0..groups.len() as f64, 0.0..top)
        .map_err(error)?;
    let labels: Vec<String> = groups.iter().map(|(label, _)| label.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_max_light_lines(1)
        .x_labels(groups.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_label_style(("sans-serif", 11))
        .draw()
        .map_err(error)?;
    for (i, color) in colors.iter().enumerate() {
        let bars: Vec<Rectangle<(f64, f64)>> = groups
            .iter()
            .enumerate()
            .filter_map(|(g, (_, bars))| {
                bars.get(&i).map(|&value| {
                    let left = g as f64 + 0.1 + 0.2 * i as f64;
                    Rectangle::new([(left, 0.0), (left + 0.19, value)], color.filled())
                })
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(error)?
            .label(libraries[i].name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .draw_series(LineSeries::new(
            [(0.0, FLOOR_TARGET), (groups.len() as f64, FLOOR_TARGET)],
            RED.stroke_width(1),
        ))
        .map_err(error)?
        .label("target 0.8")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 10, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Contended;

    fn row(library: Library, store: StoreKind, scenario: Scenario, per_second: f64) -> Throughput {
        Throughput {
            target: Target::new(library, store),
            scenario,
            per_second,
            median_us: 1.0,
            failed: 0,
            contended: (scenario == Scenario::Contended).then_some(Contended {
                acknowledged: 100,
                survived: if library == Library::ActixSession {
                    3
                } else {
                    100
                },
            }),
            spread: 1.0,
        }
    }

    /// Every library on Redis and cookie; cloakroom on actix-web is faster than
    /// actix-session everywhere but Redis S3, and loses `lost_on_actix` S5 writes on Redis.
    fn results(lost_on_actix: u64) -> Results {
        let mut rows = Vec::new();
        for store in [StoreKind::Redis, StoreKind::Cookie] {
            for scenario in Scenario::ALL {
                rows.push(row(Library::Cloakroom, store, scenario, 100.0));
                rows.push(row(Library::ActixSession, store, scenario, 90.0));
                let slow = store == StoreKind::Redis && scenario == Scenario::Write;
                let mut ours = row(
                    Library::CloakroomActix,
                    store,
                    scenario,
                    if slow { 45.0 } else { 95.0 },
                );
                if let Some(contended) = ours.contended.as_mut() {
                    contended.survived -= lost_on_actix;
                }
                rows.push(ours);
            }
        }
        Results {
            in_process: rows.clone(),
            http: rows,
            ..Results::default()
        }
    }

    fn check<'a>(checks: &'a [Check], starts: &str) -> &'a Check {
        checks
            .iter()
            .find(|check| check.target.starts_with(starts))
            .unwrap()
    }

    #[test]
    fn cloakroom_on_actix_is_checked_against_actix_session_only() {
        let checks = checks(&results(0));
        let actix = check(&checks, "cloakroom on actix-web");
        assert_eq!(
            actix.checked,
            2 * 2 * 5,
            "two modes, two stores, five scenarios"
        );
        assert_eq!(
            actix.misses,
            [
                "in-process Redis S3 write: 0.50x",
                "HTTP Redis S3 write: 0.50x"
            ]
        );
        // The fastest-peer target is cloakroom on axum's alone: cloakroom on actix-web is
        // neither a peer nor checked there.
        let peer = check(&checks, "at least 1.0x the fastest peer");
        assert_eq!(peer.checked, 20);
        assert!(peer.misses.is_empty(), "{:?}", peer.misses);
    }

    #[test]
    fn lost_writes_count_on_actix_too() {
        let clean = checks(&results(0));
        let lost = check(&clean, "S5 contended");
        assert_eq!(
            lost.checked, 4,
            "Redis on axum and on actix-web, in both modes"
        );
        assert!(lost.misses.is_empty());
        let lossy = checks(&results(2));
        assert_eq!(
            check(&lossy, "S5 contended").misses,
            [
                "in-process Redis S5 contended (actix-web): 2 lost",
                "HTTP Redis S5 contended (actix-web): 2 lost"
            ]
        );
    }

    #[test]
    fn a_run_of_the_actix_targets_alone_still_has_their_rows() {
        let mut results = results(0);
        results
            .in_process
            .retain(|row| row.target.library != Library::Cloakroom);
        let text = markdown(&results, "chart.svg", "bench");
        assert!(text.contains("| Redis | S3 write | - | 45.0 | - | 90.0 | - | - | - | 0.50 |"));
    }

    #[test]
    fn the_tables_have_the_actix_column_and_ratio() {
        let text = markdown(&results(0), "chart.svg", "bench");
        assert!(text.contains(
            "| store | scenario | cloakroom | cloakroom (actix-web) | tower-sessions | actix-session | floor \
             | peer/cloakroom | cloakroom/floor | cloakroom (actix-web)/actix-session |"
        ));
        assert!(text
            .contains("| Redis | S3 write | 100 | 45.0 | - | 90.0 | - | actix 0.90 | - | 0.50 |"));
        assert!(text.contains("| Redis | cloakroom (actix-web) | 95.0 | 100 | 100 | 0 |"));
        assert!(text.contains(
            "| cloakroom on actix-web at least 1.0x actix-session (Redis and cookie, every scenario) | **missed** in 2 of 20"
        ));
    }
}
