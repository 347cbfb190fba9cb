//! The `Cookie` header: finding the session ID among arbitrary header values (split at
//! newlines, as several `Cookie` headers), directly and through a session manager.
//!
//! Checked: never a panic; the ID found is the first of at most `MAX_CANDIDATES` distinct
//! well-formed candidates; an unknown ID is an
//! anonymous request (loads empty, commits nothing, no error).
#![no_main]

use std::sync::{Arc, OnceLock};

use cloakroom::codec::{cookie_values, find_session_id, session_id_candidates, MAX_CANDIDATES};
use cloakroom::{MemoryStore, RequestClient, SessionConfig, SessionId, SessionManager};
use libfuzzer_sys::fuzz_target;

fn manager() -> &'static Arc<SessionManager> {
    static MANAGER: OnceLock<Arc<SessionManager>> = OnceLock::new();
    MANAGER.get_or_init(|| {
        Arc::new(SessionManager::new(MemoryStore::new(), SessionConfig::default()).unwrap())
    })
}

fuzz_target!(|data: &[u8]| {
    let headers: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let found = find_session_id(headers.iter().copied(), "id");
    let values = cookie_values(headers.iter().copied(), "id");
    // The ID found is the first candidate; candidates are bounded and distinct. (The
    // bound counts well-formed IDs, while `cookie_values` counts every value, so the ID
    // found may lie past the values listed.)
    let candidates = session_id_candidates(headers.iter().copied(), "id");
    assert_eq!(
        found.as_ref(),
        candidates.first(),
        "found is not the first candidate"
    );
    assert!(candidates.len() <= MAX_CANDIDATES, "unbounded candidates");
    for (i, id) in candidates.iter().enumerate() {
        assert!(!candidates[..i].contains(id), "a repeated candidate");
    }
    if found.is_none() {
        assert!(
            values.iter().all(|v| SessionId::parse(v).is_none()),
            "a well-formed ID among the values was not found"
        );
    }
    let session = manager().session(headers.iter().copied(), RequestClient::default());
    cloakroom_fuzz::runtime().block_on(async {
        let keys = session
            .keys()
            .await
            .expect("an unknown ID loads as anonymous");
        assert!(keys.is_empty(), "an unknown ID was adopted");
        let finish = session.finish(http::StatusCode::OK).await;
        assert!(
            finish.error.is_none(),
            "an untouched session failed to finish"
        );
        assert!(
            finish.set_cookie.is_none(),
            "an anonymous read set a cookie"
        );
    });
});
