//! `Debug` never prints a bearer secret: not a session ID, not a sealed cookie, not a key.

use std::sync::Arc;

use cloakroom::{
    generate_key, CookieSessions, KeyRing, MemoryStore, RequestClient, SessionConfig, SessionId,
    SessionManager,
};
use http::StatusCode;

/// The value of a `Set-Cookie` header: the secret it carries.
fn cookie_value(finish: &cloakroom::Finish) -> String {
    let set = finish
        .set_cookie
        .as_ref()
        .expect("a new session sends its cookie");
    let text = set.to_str().unwrap();
    let value = text.split(';').next().unwrap().split_once('=').unwrap().1;
    assert!(value.len() >= 43, "{text}");
    value.to_owned()
}

async fn finished(manager: SessionManager) -> cloakroom::Finish {
    let manager = Arc::new(manager);
    let session = manager.session([], RequestClient::default());
    session.insert("cart", "apple").await.unwrap();
    session.finish(StatusCode::OK).await
}

#[tokio::test]
async fn a_finish_does_not_print_the_cookie_it_carries() {
    let key = generate_key();
    for manager in [
        SessionManager::new(MemoryStore::new(), SessionConfig::default()).unwrap(),
        SessionManager::cookie(
            CookieSessions::encrypted(KeyRing::parse(&key).unwrap()),
            SessionConfig::default(),
        )
        .unwrap(),
    ] {
        let finish = finished(manager).await;
        let secret = cookie_value(&finish);
        let printed = format!("{finish:?}");
        assert!(!printed.contains(&secret), "{printed}");
        assert!(
            !printed.contains(&secret[..16]),
            "not even a prefix: {printed}"
        );
        assert!(
            printed.contains("HttpOnly"),
            "the attributes still show: {printed}"
        );
        let pretty = format!("{finish:#?}");
        assert!(!pretty.contains(&secret[..16]), "{pretty}");
    }
}

#[test]
fn ids_keys_and_rings_do_not_print_their_secrets() {
    let id = SessionId::generate();
    assert!(!format!("{id:?}").contains(&id.to_cookie_value()[..16]));
    let key = generate_key();
    let ring = KeyRing::parse(&key).unwrap();
    let sessions = CookieSessions::signed(ring.clone());
    for printed in [
        format!("{ring:?}"),
        format!("{sessions:?}"),
        format!("{:?}", ring.current()),
    ] {
        assert!(!printed.contains(&key[..16]), "{printed}");
    }
}
