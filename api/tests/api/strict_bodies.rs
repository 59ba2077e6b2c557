//! Every route that takes a body reads it the same strict way: a key given
//! twice, or a field the body does not know, is a 400 naming it (and in a
//! batch, the item's index), in JSON and in MessagePack, and nothing is
//! stored.

use serde_json::{Value, json};
use testkit::{TestApp, assert_client_error, spawn_app};

fn event() -> Value {
    json!({"tenant": "acme", "feature": "gpt-4o", "tokens": 1})
}

/// Every operation of the spec that takes a body, its path parameters
/// filled in.
fn write_operations(spec: &Value) -> Vec<(reqwest::Method, String)> {
    let mut operations = Vec::new();
    for (path, methods) in spec["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            if operation.get("requestBody").is_none() || path.starts_with("/v1/") {
                continue;
            }
            let path = path
                .replace("{tenant}", "acme")
                .replace("{id}", "0193a5c0-7f3a-7000-8000-000000000001");
            operations.push((method.to_uppercase().parse().unwrap(), path));
        }
    }
    operations
}

/// Sends `body` (JSON text, as it is) to `path` with `method`.
async fn send_text(app: &TestApp, method: reqwest::Method, path: &str, body: &str) -> Value {
    let response = app
        .client
        .request(method.clone(), format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let refused = assert_client_error(response, 400).await;
    assert_eq!(
        refused["error"], "invalid request",
        "{method} {path}: {refused}"
    );
    refused
}

#[tokio::test]
async fn every_write_route_refuses_a_key_given_twice_and_names_it() {
    let app = spawn_app().await;
    let (_, spec) = app.get_json("/openapi.json").await;
    let operations = write_operations(&spec);
    assert!(operations.len() >= 10, "{operations:?}");

    for (method, path) in operations {
        let refused = send_text(&app, method.clone(), &path, r#"{"name": 1, "name": 2}"#).await;
        assert_eq!(
            refused["details"],
            json!({"field": "name", "reason": "is given more than once"}),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn a_repeated_tokens_is_never_counted_in_json_or_messagepack() {
    let app = spawn_app().await;
    let single = r#"{"tenant": "acme", "feature": "gpt-4o", "tokens": 1, "tokens": 999999999}"#;
    let batch = format!(r#"{{"events": [{}, {single}]}}"#, event());
    // The same event in MessagePack: a map of four pairs, `tokens` twice.
    let mut msgpack = vec![0x84];
    for (key, value) in [("tenant", "acme"), ("feature", "gpt-4o")] {
        msgpack.push(0xa0 | key.len() as u8);
        msgpack.extend(key.as_bytes());
        msgpack.push(0xa0 | value.len() as u8);
        msgpack.extend(value.as_bytes());
    }
    msgpack.extend(b"\xa6tokens\x01\xa6tokens\xce\x3b\x9a\xc9\xff");

    let single = send_text(&app, reqwest::Method::POST, "/api/events", single).await;
    let batch = send_text(&app, reqwest::Method::POST, "/api/events/batch", &batch).await;
    let packed = app
        .post_as("/api/events", "application/msgpack", msgpack)
        .await;

    let repeated = json!({"field": "tokens", "reason": "is given more than once"});
    assert_eq!(single["details"], repeated);
    assert_eq!(
        batch["details"],
        json!({"field": "tokens", "index": 1, "reason": "is given more than once"})
    );
    assert_eq!(assert_client_error(packed, 400).await["details"], repeated);
    assert_eq!(app.env.stream_len().await, 0, "nothing was stored");
}

#[tokio::test]
async fn every_write_route_refuses_a_field_it_does_not_know_and_names_it() {
    let app = spawn_app().await;
    let (_, spec) = app.get_json("/openapi.json").await;

    for (method, path) in write_operations(&spec) {
        let refused = send_text(&app, method.clone(), &path, r#"{"zzUnknown": 1}"#).await;
        assert_eq!(
            refused["details"]["field"], "zzUnknown",
            "{method} {path}: {refused}"
        );
        let reason = refused["details"]["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("is not a field of this body"),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn a_misspelled_field_is_refused_not_ignored() {
    let app = spawn_app().await;
    let mut misspelled = event();
    misspelled["timestmap"] = json!("2026-12-01T00:00:00Z");
    let mut capital_id = event();
    capital_id["Id"] = json!("call-1");

    let single = app.post("/api/events", &misspelled).await;
    let batch = app
        .post(
            "/api/events/batch",
            &json!({"events": [event(), capital_id]}),
        )
        .await;

    let single = assert_client_error(single, 400).await;
    assert_eq!(single["details"]["field"], "timestmap", "{single}");
    let batch = assert_client_error(batch, 400).await;
    assert_eq!(batch["details"]["field"], "Id", "{batch}");
    assert_eq!(batch["details"]["index"], 1, "{batch}");
    assert_eq!(app.env.stream_len().await, 0, "nothing was stored");
}

#[tokio::test]
async fn redriving_every_dead_letter_takes_an_explicit_all() {
    let app = spawn_app().await;
    let cases = [
        (json!({}), "ids"),
        (json!({"limit": 5}), "ids"),
        (json!({"ids": null}), "ids"),
        (json!({"all": false}), "all"),
        (json!({"ids": [1], "all": true}), "all"),
        (json!({"ids": [1], "limit": 5}), "limit"),
        (json!({"ids": []}), "ids"),
    ];
    for (body, field) in cases {
        let refused = app.post("/api/dead-letters/redrive", &body).await;
        let refused = assert_client_error(refused, 400).await;
        assert_eq!(refused["details"]["field"], field, "{body}: {refused}");
    }
    // An event sent to the wrong route: one of its fields is named.
    let refused = app.post("/api/dead-letters/redrive", &event()).await;
    let refused = assert_client_error(refused, 400).await;
    let field = refused["details"]["field"].as_str().unwrap_or_default();
    assert!(event().get(field).is_some(), "{refused}");

    let all = app
        .post("/api/dead-letters/redrive", &json!({"all": true}))
        .await;
    let some = app
        .post("/api/dead-letters/redrive", &json!({"ids": [1, 2]}))
        .await;
    assert_eq!(all.status().as_u16(), 200);
    assert_eq!(
        all.json::<Value>().await.unwrap(),
        json!({"redriven": 0, "dropped": 0})
    );
    assert_eq!(some.status().as_u16(), 200);
}
