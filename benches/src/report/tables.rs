//! The Markdown tables of throughput and round trips.

use std::fmt::Write;

use crate::results::{RoundTrips, Throughput};
use crate::scenario::{Library, Scenario, StoreKind, Target};

use super::{bare_axum_beside, find, rate, COLUMNS};

/// `| a | b |` and its alignment line, the first `left` columns left-aligned.
pub(super) fn header(out: &mut String, columns: &[&str], left: usize) {
    let _ = writeln!(out, "| {} |", columns.join(" | "));
    let align: Vec<&str> = (0..columns.len())
        .map(|i| if i < left { "---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "|{}|", align.join("|"));
}

pub(super) fn throughput_table(out: &mut String, rows: &[Throughput]) {
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
    let beside: Vec<String> = StoreKind::ALL
        .iter()
        .filter_map(|&store| {
            let ours = find(rows, Library::Cloakroom, store, Scenario::Untouched)?;
            let bare = bare_axum_beside(rows, store)?;
            Some(format!(
                "{} {} req/s, cloakroom {:.3}",
                store.name(),
                rate(bare.per_second),
                ours.per_second / bare.per_second
            ))
        })
        .collect();
    if !beside.is_empty() {
        let _ = writeln!(
            out,
            "\nBare axum, no session layer, S1, measured beside each store's apps, and cloakroom's \
             S1 against it: {}.",
            beside.join("; ")
        );
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

pub(super) fn round_trip_table(out: &mut String, rows: &[RoundTrips]) {
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
