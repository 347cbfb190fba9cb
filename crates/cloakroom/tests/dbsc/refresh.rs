//! Refreshes: challenges, proofs, and the bound cookie they renew.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use cloakroom::conformance::{HookedStore, Operation, StoreHook};
use cloakroom::dbsc::test_signer::{new_key, refresh_proof, registration_proof};
use cloakroom::{CookieConfig, MemoryStore, SessionConfig, SessionStore};

use crate::site::*;

#[tokio::test]
async fn refresh_without_a_proof_gets_a_challenge_then_a_cookie() {
    let site = site_with(true);
    let device = new_key();
    let (mut browser, _, id) = Browser::registered(&site, &device).await;
    let asked = browser.refresh(&site, &id, None).await;
    assert_eq!(asked.status, StatusCode::FORBIDDEN);
    let proof = refresh_proof(&device, &asked.challenge());
    let refreshed = browser.refresh(&site, &id, Some(&proof)).await;
    assert_eq!(refreshed.status, StatusCode::OK);
    assert!(refreshed
        .header("set-cookie")
        .unwrap()
        .starts_with(BOUND_COOKIE));
}

#[tokio::test]
async fn a_replayed_or_foreign_refresh_proof_is_refused() {
    let site = site_with(true);
    let device = new_key();
    let (mut browser, reply, id) = Browser::registered(&site, &device).await;
    let proof = refresh_proof(&device, &reply.challenge());
    let first = browser.refresh(&site, &id, Some(&proof)).await;
    assert_eq!(first.status, StatusCode::OK);
    // The same proof again: its challenge was used.
    let replayed = browser.refresh(&site, &id, Some(&proof)).await;
    assert_eq!(replayed.status, StatusCode::UNAUTHORIZED);
    assert!(replayed.header("set-cookie").is_none());

    // Another key (a thief's device) signing a live challenge.
    let asked = browser.refresh(&site, &id, None).await;
    let stolen = refresh_proof(&new_key(), &asked.challenge());
    let refused = browser.refresh(&site, &id, Some(&stolen)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.header("set-cookie").is_none());
    // A registration over the bound key is refused too.
    let again = registration_proof(&new_key(), &asked.challenge(), "x");
    let rebind = browser.register(&site, &again).await;
    assert_eq!(rebind.status, StatusCode::BAD_REQUEST);
}

/// Two refreshes racing with one proof: the compare-and-set lets exactly one through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_refreshes_with_one_proof_get_one_cookie() {
    let site = Arc::new(site_with(true));
    let device = new_key();
    for _ in 0..10 {
        let (browser, reply, id) = Browser::registered(&site, &device).await;
        let proof = refresh_proof(&device, &reply.challenge());
        let racers = (0..4).map(|_| {
            let (site, mut browser) = (Arc::clone(&site), browser.clone());
            let (id, proof) = (id.clone(), proof.clone());
            tokio::spawn(async move { browser.refresh(&site, &id, Some(&proof)).await.status })
        });
        let mut statuses = Vec::new();
        for racer in racers.collect::<Vec<_>>() {
            statuses.push(racer.await.unwrap());
        }
        let won = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(won, 1, "{statuses:?}");
        assert!(statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED));
    }
}

#[tokio::test]
async fn expired_challenges_are_refused() {
    let site = site_with(true);
    let device = new_key();
    // Registration: the offer's challenge aged past its expiry in the store.
    let (mut browser, login) = Browser::logged_in(&site).await;
    edit_binding(&site, &browser, |binding| {
        binding["challenge"]["expires_at"] = past_ms().into();
    })
    .await;
    let proof = login.registration_proof(&device);
    let reply = browser.register(&site, &proof).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    // Refresh: the pre-sent challenge aged the same way.
    let (mut browser, reply, id) = Browser::registered(&site, &device).await;
    edit_binding(&site, &browser, |binding| {
        for challenge in binding["challenges"].as_array_mut().unwrap() {
            challenge["expires_at"] = past_ms().into();
        }
    })
    .await;
    let proof = refresh_proof(&device, &reply.challenge());
    let refused = browser.refresh(&site, &id, Some(&proof)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}

/// A thief with the session cookie (no device key, no bound cookie) asking for refresh
/// challenges neither pushes out the challenge the browser was sent nor costs the store a
/// write per request. Each proof-less refresh stored a new challenge, and a third pushed
/// out the oldest: two were enough to evict the one the browser held, whose next refresh
/// then got a 401 that ends Chrome's bound session, logging the user out.
#[tokio::test]
async fn a_thief_asking_for_challenges_cannot_evict_the_browsers() {
    let site = site_with(true);
    let device = new_key();
    let (mut browser, reply, id) = Browser::registered(&site, &device).await;
    let mut thief = browser.session_cookie_only();
    let first = thief.refresh(&site, &id, None).await;
    assert_eq!(first.status, StatusCode::FORBIDDEN);
    let version = stored(&site, &browser).await.unwrap().version;
    for _ in 0..3 {
        let again = thief.refresh(&site, &id, None).await;
        assert_eq!(again.status, StatusCode::FORBIDDEN);
        assert_eq!(
            again.challenge(),
            first.challenge(),
            "the outstanding one is sent again"
        );
    }
    assert_eq!(
        stored(&site, &browser).await.unwrap().version,
        version,
        "asking again writes nothing"
    );
    let proof = refresh_proof(&device, &reply.challenge());
    let refreshed = browser.refresh(&site, &id, Some(&proof)).await;
    assert_eq!(
        refreshed.status,
        StatusCode::OK,
        "the browser's pre-sent challenge still works"
    );
}

/// A refresh finds the session its identifier names among the request's session cookies.
/// It took the first live one, so a live session cookie planted in front of ours from a
/// sibling subdomain (the attacker's own session) answered `{"continue":false}`, which
/// ends the victim's bound session in Chrome.
#[tokio::test]
async fn a_refresh_passes_over_a_planted_session_cookie() {
    let site = site_with(true);
    let device = new_key();
    let (browser, reply, id) = Browser::registered(&site, &device).await;
    let (attacker, _) = Browser::logged_in(&site).await;
    let line = format!(
        "{SESSION_COOKIE}={}; {SESSION_COOKIE}={}",
        attacker.cookies[SESSION_COOKIE], browser.cookies[SESSION_COOKIE]
    );
    let proof = refresh_proof(&device, &reply.challenge());
    let refreshed = Browser::default()
        .send(
            &site,
            "POST",
            REFRESH,
            &[
                ("cookie", line.as_str()),
                ("sec-secure-session-id", id.as_str()),
                ("secure-session-response", proof.as_str()),
            ],
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert!(
        refreshed
            .header("set-cookie")
            .is_some_and(|cookie| cookie.starts_with(BOUND_COOKIE)),
        "{:?} {}",
        refreshed.headers,
        refreshed.body
    );
}

/// A touch (another request's idle refresh) that lands while a refresh saves its binding
/// is kept. The refresh wrote back the whole record as it loaded it, and a touch does not
/// move the version its compare-and-set checks, so the session's idle deadline went back
/// to before the touch.
#[tokio::test]
async fn a_touch_landing_during_a_refresh_is_kept() {
    /// Touches `armed`'s session as the next update reaches the store.
    #[derive(Default)]
    struct TouchBeforeUpdate {
        store: MemoryStore,
        armed: std::sync::Mutex<Option<(cloakroom::StoreKey, cloakroom::Touch)>>,
    }
    #[async_trait::async_trait]
    impl StoreHook for TouchBeforeUpdate {
        async fn before(&self, operation: Operation) -> Result<(), cloakroom::StoreError> {
            let armed = self.armed.lock().unwrap().take();
            if let (Operation::Update, Some((key, touch))) = (operation, armed) {
                self.store.touch(&key, &touch).await.unwrap();
            }
            Ok(())
        }
    }

    let hook = Arc::new(TouchBeforeUpdate::default());
    let inner: Arc<dyn SessionStore> = Arc::new(HookedStore::with_hook(
        Arc::new(hook.store.clone()),
        Arc::clone(&hook),
    ));
    let site = site_over(inner, true, Duration::ZERO, CookieConfig::default());
    let device = new_key();
    let (mut browser, reply, id) = Browser::registered(&site, &device).await;
    // The session was last refreshed a while ago, within the touch interval.
    let expiry = SessionConfig::default().expiry;
    let key = cloakroom::SessionId::parse(&browser.cookies[SESSION_COOKIE])
        .unwrap()
        .store_key();
    let mut record = stored(&site, &browser).await.unwrap();
    record.last_active_at = cloakroom::record::now() - Duration::from_secs(50);
    record.idle_deadline = expiry.idle_deadline(record.last_active_at);
    site.store.update(&key, &record).await.unwrap();

    let t = cloakroom::record::now();
    let touch = cloakroom::Touch {
        last_active_at: t,
        idle_deadline: expiry.idle_deadline(t),
    };
    *hook.armed.lock().unwrap() = Some((key, touch));
    let proof = refresh_proof(&device, &reply.challenge());
    assert_eq!(
        browser.refresh(&site, &id, Some(&proof)).await.status,
        StatusCode::OK
    );
    assert!(hook.armed.lock().unwrap().is_none(), "the touch landed");
    let kept = stored(&site, &browser)
        .await
        .unwrap()
        .idle_deadline
        .unwrap();
    let touched = touch.idle_deadline.unwrap();
    assert!(
        kept >= touched - Duration::from_secs(1),
        "the refresh moved the idle deadline back by {}",
        touched - kept
    );
}

/// A verified refresh records the browser's activity, and a remembered session's cookie
/// goes again with it, with its new life. It went without: the requests after the refresh
/// saw the activity recorded and refreshed nothing, so the browser's cookie expired at
/// the deadline it was last sent with, logging out a user whose session was live. A
/// browser-session cookie (no `Max-Age`) has nothing to renew and is not sent.
#[tokio::test]
async fn a_refresh_renews_a_remembered_session_s_cookie() {
    for remembered in [true, false] {
        let site = site_with(true);
        let device = new_key();
        let (mut browser, _, id) = Browser::registered(&site, &device).await;
        let key = cloakroom::SessionId::parse(&browser.cookies[SESSION_COOKIE])
            .unwrap()
            .store_key();
        let mut record = site.store.load(&key).await.unwrap().unwrap();
        record.persistent = remembered;
        site.store.update(&key, &record).await.unwrap();
        let asked = browser.refresh(&site, &id, None).await;
        let proof = refresh_proof(&device, &asked.challenge());
        let refreshed = browser.refresh(&site, &id, Some(&proof)).await;
        assert_eq!(refreshed.status, StatusCode::OK);
        let session_cookie = refreshed
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .find(|cookie| cookie.starts_with(&format!("{SESSION_COOKIE}=")));
        match session_cookie {
            Some(cookie) => assert!(remembered && cookie.contains("Max-Age="), "{cookie}"),
            None => assert!(!remembered, "a remembered session's cookie is renewed"),
        }
        assert_eq!(browser.whoami(&site).await, "alice");
    }
}
