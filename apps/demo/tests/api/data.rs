//! Session data through the API: cart, counter and preferences, concurrent increments,
//! and the size limits.

use axum::http::StatusCode;
use serde_json::json;

use crate::client::*;

#[tokio::test]
async fn cart_counter_and_prefs_work_anonymously() {
    let app = app();
    assert_eq!(
        send(&app, "GET", "/api/cart", None, None).await.body,
        json!({"items": []})
    );
    let first = send(&app, "POST", "/api/cart", None, Some(r#"{"item":"apple"}"#)).await;
    let cookie = first.cookie.unwrap();
    assert_eq!(first.body, json!({"items": ["apple"]}));
    let second = send(
        &app,
        "POST",
        "/api/cart",
        Some(&cookie),
        Some(r#"{"item":"pear"}"#),
    )
    .await;
    assert_eq!(second.body, json!({"items": ["apple", "pear"]}));
    for n in 1..=3 {
        assert_eq!(
            send(&app, "POST", "/api/counter", Some(&cookie), None)
                .await
                .body,
            json!({"value": n})
        );
    }
    assert_eq!(
        send(
            &app,
            "PUT",
            "/api/prefs/theme",
            Some(&cookie),
            Some(r#"{"value":"dark"}"#)
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        send(
            &app,
            "PUT",
            "/api/prefs/size",
            Some(&cookie),
            Some(r#"{"value":12}"#)
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, "GET", "/api/prefs", Some(&cookie), None)
            .await
            .body,
        json!({"theme": "dark", "size": 12})
    );
}

#[tokio::test]
async fn concurrent_counter_increments_each_get_a_distinct_value() {
    let app = app();
    let cookie = send(&app, "POST", "/api/counter", None, None)
        .await
        .cookie
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (app, cookie) = (app.clone(), cookie.clone());
            tokio::spawn(async move {
                send(&app, "POST", "/api/counter", Some(&cookie), None)
                    .await
                    .body["value"]
                    .as_u64()
                    .unwrap()
            })
        })
        .collect();
    let mut values = Vec::new();
    for task in tasks {
        values.push(task.await.unwrap());
    }
    values.sort_unstable();
    assert_eq!(
        values,
        (2..=51).collect::<Vec<u64>>(),
        "each answer is the committed value"
    );
}

#[tokio::test]
async fn oversized_items_and_preferences_are_413() {
    let app = app();
    let big = "x".repeat(1025);
    let reply = send(
        &app,
        "POST",
        "/api/cart",
        None,
        Some(&json!({"item": big}).to_string()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let reply = send(
        &app,
        "PUT",
        "/api/prefs/theme",
        None,
        Some(&json!({"value": big}).to_string()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let reply = send(
        &app,
        "PUT",
        &format!("/api/prefs/{}", "n".repeat(2000)),
        None,
        Some(r#"{"value":1}"#),
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let exact = "y".repeat(1024); // exactly 1 KiB is allowed
    assert_eq!(
        send(
            &app,
            "POST",
            "/api/cart",
            None,
            Some(&json!({"item": exact}).to_string())
        )
        .await
        .status,
        StatusCode::OK
    );
    let reply = send(
        &app,
        "PUT",
        "/api/prefs/theme",
        None,
        Some(&json!({"value": exact}).to_string()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
}
