//! Every log line and span field the demo emits across its whole API, captured at every
//! level, holds no raw session ID. On axum and on actix-web.
//!
//! This file is a test binary of its own with one test, and the capture is the process's
//! global subscriber. Thread-local subscribers made the capture miss spans now and then
//! (tracing caches a callsite's interest process-wide, and another test's thread could
//! cache "never" for it); a global subscriber is in place before any callsite is hit.

mod flows;

use std::fs::File;
use std::io::{Read, Seek};

use flows::{demo, every_api_flow, Ids};
use tracing_subscriber::fmt::format::FmtSpan;

/// Everything the subscriber writes, kept in a scratch file: `tracing_subscriber` writes to
/// a `File` as it is, and the handle it gets shares this one's file offset.
struct Captured(File);

impl Captured {
    fn new() -> Self {
        Self(tempfile::tempfile().unwrap())
    }

    /// A handle for the subscriber.
    fn writer(&self) -> File {
        self.0.try_clone().unwrap()
    }

    /// Forgets what was written so far.
    fn clear(&self) {
        self.0.set_len(0).unwrap();
        (&self.0).rewind().unwrap();
    }

    fn text(&self) -> String {
        let mut bytes = Vec::new();
        (&self.0).rewind().unwrap();
        (&self.0).read_to_end(&mut bytes).unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[tokio::test]
async fn no_log_line_or_span_field_holds_a_session_id_on_either_framework() {
    let captured = Captured::new();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.writer())
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::FULL)
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    for actix in [false, true] {
        captured.clear();
        no_session_id_in_the_logs(&captured, actix).await;
    }
}

async fn no_session_id_in_the_logs(captured: &Captured, actix: bool) {
    let app = demo(actix);
    let mut ids = Ids::default();
    every_api_flow(&app, &mut ids).await;
    let framework = if actix { "actix-web" } else { "axum" };
    let text = captured.text();
    assert!(
        ids.0.len() > 10,
        "the flows saw session IDs: {}",
        ids.0.len()
    );
    // The capture is not empty: the session and store spans are in it, with their fields.
    for expected in [
        "cloakroom.session",
        "cloakroom.store",
        "outcome=\"rotated\"",
        "outcome=\"destroyed\"",
        "outcome=\"written\"",
        "outcome=\"read\"",
        "handle=",
        "operation=\"load\"",
    ] {
        assert!(
            text.contains(expected),
            "{framework}: no {expected} in the capture:\n{text}"
        );
    }
    for id in &ids.0 {
        assert!(
            !text.contains(id.as_str()),
            "{framework}: a session ID appears in the logs:\n{text}"
        );
    }
}
