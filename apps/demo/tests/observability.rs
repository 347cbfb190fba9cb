//! What the demo tells operators through `/metrics`: it counts sessions and holds no
//! session ID. On axum and on actix-web. (Log lines and spans: `logs.rs`.)

mod flows;

use axum::http::StatusCode;
use flows::{demo, every_api_flow, Browser, Ids};

#[tokio::test]
async fn metrics_are_served_in_the_prometheus_format() {
    metrics_in_the_prometheus_format(false).await;
}

#[tokio::test]
async fn metrics_are_served_in_the_prometheus_format_on_actix() {
    metrics_in_the_prometheus_format(true).await;
}

async fn metrics_in_the_prometheus_format(actix: bool) {
    let app = demo(actix);
    let mut ids = Ids::default();
    every_api_flow(&app, &mut ids).await;
    let metrics = Browser::new(&app, "prometheus")
        .send(&mut ids, "GET", "/metrics", None)
        .await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.text;
    for expected in [
        "# TYPE cloakroom_sessions_created_total counter",
        "cloakroom_sessions_loaded_total",
        "cloakroom_sessions_rotated_total",
        "cloakroom_sessions_logged_out_total",
        "cloakroom_sessions_revoked_total{by=\"user\"}",
        "cloakroom_bad_cookies_total{reason=\"unknown\"}",
        "cloakroom_bad_cookies_total{reason=\"malformed\"}",
        "cloakroom_store_operation_duration_seconds_bucket{store=\"memory\",operation=\"load\"",
    ] {
        assert!(
            text.contains(expected),
            "no {expected} in /metrics:\n{text}"
        );
    }
    for id in &ids.0 {
        assert!(!text.contains(id.as_str()), "a session ID in /metrics");
    }
}
