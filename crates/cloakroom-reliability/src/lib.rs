//! The reliability campaign's harnesses (issue 12), run by `scripts/reliability.sh`,
//! `scripts/soak.sh` and this crate's tests; `scripts/reliability.sh` turns their results
//! into `RELIABILITY.md`.
//!
//! - [`crash`]: SIGKILL a writer mid-write, again and again, on SQLite and the file store.
//! - [`outage`]: kill or freeze a private Redis, PostgreSQL, MariaDB or Memcached under
//!   load and bring it back ([`servers`] runs them, [`load`] is the app and its clients).
//! - [`soak`]: long full load, watching memory, p99 latency and errors.
//! - [`scale`]: one user with many sessions, on any store URL.

pub mod crash;
pub mod load;
pub mod outage;
pub mod scale;
pub mod servers;
pub mod soak;

/// Writes one result as JSON (`{"command", "date", "passed", "report"}`) to `path`, for
/// `scripts/reliability.sh` to tabulate.
pub fn write_result(
    path: &std::path::Path,
    passed: bool,
    report: &impl serde::Serialize,
) -> std::io::Result<()> {
    let command: Vec<String> = std::env::args().collect();
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let value = serde_json::json!({
        "command": command.join(" "),
        "date": date,
        "passed": passed,
        "report": report,
    });
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(&value)? + "\n")
}
