//! Session data through the API: cart, counter and preferences, concurrent increments,
//! and the size limits.

use axum::http::StatusCode;
use serde_json::json;

use crate::client::*;

#[tokio::test]
async fn cart_counter_and_prefs_work_anonymously() {
    let app = app();
    assert_eq!(
        get(&app, "/api/cart", None).await.body,
        json!({"items": []})
    );
    let first = post(&app, "/api/cart", None, Some(r#"{"item":"apple"}"#)).await;
    let cookie = first.cookie.unwrap();
    assert_eq!(first.body, json!({"items": ["apple"]}));
    let second = post(&app, "/api/cart", Some(&cookie), Some(r#"{"item":"pear"}"#)).await;
    assert_eq!(second.body, json!({"items": ["apple", "pear"]}));
    for n in 1..=3 {
        assert_eq!(
            post(&app, "/api/counter", Some(&cookie), None).await.body,
            json!({"value": n})
        );
    }
    assert_eq!(
        put(
            &app,
            "/api/prefs/theme",
            Some(&cookie),
            Some(r#"{"value":"dark"}"#)
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        put(
            &app,
            "/api/prefs/size",
            Some(&cookie),
            Some(r#"{"value":12}"#)
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/api/prefs", Some(&cookie)).await.body,
        json!({"theme": "dark", "size": 12})
    );
}

#[tokio::test]
async fn concurrent_counter_increments_each_get_a_distinct_value() {
    let app = app();
    let cookie = post(&app, "/api/counter", None, None).await.cookie.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (app, cookie) = (app.clone(), cookie.clone());
            tokio::spawn(async move {
                post(&app, "/api/counter", Some(&cookie), None).await.body["value"]
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
    // Items and preference values: one byte over the limit is refused, exactly 1 KiB is
    // allowed. An oversized preference name is refused too.
    for (size, expected) in [
        (1025, StatusCode::PAYLOAD_TOO_LARGE),
        (1024, StatusCode::OK),
    ] {
        let value = "x".repeat(size);
        let item = json!({ "item": value }).to_string();
        let reply = post(&app, "/api/cart", None, Some(&item)).await;
        assert_eq!(reply.status, expected, "an item of {size} bytes");
        let pref = json!({ "value": value }).to_string();
        let reply = put(&app, "/api/prefs/theme", None, Some(&pref)).await;
        assert_eq!(reply.status, expected, "a preference value of {size} bytes");
    }
    let name = "n".repeat(2000);
    let reply = put(
        &app,
        &format!("/api/prefs/{name}"),
        None,
        Some(r#"{"value":1}"#),
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}
