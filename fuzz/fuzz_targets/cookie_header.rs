//! The `Cookie` header: finding the session ID among arbitrary header values (split at
//! newlines, as several `Cookie` headers), directly and through a session manager.
//!
//! Checked: never a panic; an ID found is one of the cookie's values; an unknown ID is an
//! anonymous request (loads empty, commits nothing, no error).
#![no_main]

use std::sync::{Arc, OnceLock};

use cloakroom::codec::{cookie_values, find_session_id};
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
    if let Some(id) = &found {
        assert!(
            values
                .iter()
                .any(|v| SessionId::parse(v).as_ref() == Some(id)),
            "the ID found is not among the cookie's values"
        );
    } else {
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
