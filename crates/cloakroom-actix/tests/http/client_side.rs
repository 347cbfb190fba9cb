//! Client-side cookie sessions: sealed round trips, tampering, and revocation by epoch.

use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use async_trait::async_trait;
use cloakroom::{
    generate_key, BoxError, CookieSessions, EpochSource, KeyRing, SessionConfig, SessionManager,
};
use serde_json::{json, Value};

use crate::support::*;

#[actix_web::test]
async fn client_side_cookie_sessions_round_trip_sealed() {
    let ring = KeyRing::parse(&generate_key()).unwrap();
    let manager = SessionManager::cookie(CookieSessions::encrypted(ring), SessionConfig::default())
        .expect("valid configuration");
    let app = app!(Arc::new(manager));
    let set = send(&app, post("/set/secret", None, json!("hunter2"))).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let cookie = set.cookie();
    assert!(
        !cookie.contains("hunter2"),
        "the value is encrypted: {cookie}"
    );
    assert_eq!(read(&app, "/get/secret", &cookie).await, json!("hunter2"));

    // One flipped character: the seal fails and the request is anonymous.
    let (name, value) = cookie.split_once('=').unwrap();
    let mut bytes = value.as_bytes().to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{name}={}", String::from_utf8(bytes).unwrap());
    let reply = send(&app, get("/get/secret", Some(&tampered))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), Value::Null);
}

/// An app-owned epoch per user, bumped to log the user out everywhere.
#[derive(Clone, Default)]
struct Epochs(Arc<Mutex<u64>>);

#[async_trait]
impl EpochSource for Epochs {
    async fn current_epoch(&self, user: &str) -> Result<Option<String>, BoxError> {
        Ok(Some(format!("{user}:{}", self.0.lock().unwrap())))
    }
}

#[actix_web::test]
async fn an_epoch_bump_revokes_client_side_sessions() {
    let epochs = Epochs::default();
    let ring = KeyRing::parse(&generate_key()).unwrap();
    let config = SessionConfig::default().with_epochs(epochs.clone());
    let manager = SessionManager::cookie(CookieSessions::encrypted(ring), config).unwrap();
    let app = app!(Arc::new(manager));
    let cookie = send(&app, post("/login/carol", None, Value::Null))
        .await
        .cookie();
    assert_eq!(read(&app, "/whoami", &cookie).await, json!("carol"));

    *epochs.0.lock().unwrap() += 1;
    let revoked = send(&app, get("/whoami", Some(&cookie))).await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(revoked.json(), Value::Null, "an older epoch is logged out");
    assert!(
        revoked.set_cookie.len() == 1 && revoked.set_cookie[0].contains("Max-Age=0"),
        "and its cookie removed: {:?}",
        revoked.set_cookie
    );
    let replay = send(&app, get("/whoami", Some(&cookie))).await;
    assert_eq!(
        replay.json(),
        Value::Null,
        "a replayed cookie stays logged out"
    );
}
