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

/// What the framework layer used to refuse in its own words (internal
/// type names, `param0`, "verification failed") is named and worded
/// plainly.
#[tokio::test]
async fn every_refusal_names_its_field_in_plain_words() {
    let app = spawn_app().await;
    let post = |path: &'static str, body: Value| {
        let app = &app;
        async move { assert_client_error(app.post(path, &body).await, 400).await }
    };
    let put = |path: &'static str, body: Value| {
        let app = &app;
        async move { assert_client_error(app.put(path, &body).await, 400).await }
    };
    let get = |path: &'static str| {
        let app = &app;
        async move { assert_client_error(app.get(path).await, 400).await }
    };
    let field = |field: &str, reason: &str| json!({"field": field, "reason": reason});
    let item = |field: &str, index: u32, reason: &str| json!({"field": field, "index": index, "reason": reason});
    let tokens = "must be an integer from 1 to 1000000000";

    let cases = [
        (
            post(
                "/api/events",
                json!({"tenant": "acme", "feature": "f", "tokens": "1500"}),
            )
            .await,
            field("tokens", tokens),
        ),
        (
            post("/api/keys", json!({"scopes": ["read"]})).await,
            field("name", "is required"),
        ),
        (
            post(
                "/api/keys",
                json!({"name": "k", "scopes": ["read", "write"]}),
            )
            .await,
            item("scopes", 1, "must be one of: admin, ingest, read"),
        ),
        (
            post("/api/events/void", json!({"tenant": "acme"})).await,
            field("id", "is required"),
        ),
        (
            put("/api/tenants/acme", json!({"billingDay": 29})).await,
            field("billingDay", "must be an integer from 1 to 28"),
        ),
        (
            put("/api/tenants/acme", json!({"monthlyQuota": 0})).await,
            field("monthlyQuota", "must be an integer of at least 1"),
        ),
        (
            put("/api/tenants/acme", json!({"alertThresholds": [50, 0]})).await,
            item("alertThresholds", 1, "must be an integer from 1 to 1000"),
        ),
        (
            get("/api/usage/acme/timeseries?granularity=week").await,
            field("granularity", "must be one of: minute, hour, day"),
        ),
        (
            get("/api/dead-letters?limit=0").await,
            field("limit", "must be an integer from 1 to 1000"),
        ),
        (
            get("/api/usage/acme/check?tokens=-1").await,
            field("tokens", "must be an integer from 0 to 1000000000"),
        ),
    ];
    for (refused, details) in cases {
        assert_eq!(refused["details"], details, "{refused}");
        let text = refused.to_string();
        for internal in ["integer_int64", "param0", "EventIn", "verification failed"] {
            assert!(!text.contains(internal), "{text}");
        }
    }

    // A MessagePack timestamp extension where an RFC 3339 string belongs.
    let mut bytes = vec![0x84];
    for (key, value) in [("tenant", "acme"), ("feature", "gpt-4o")] {
        bytes.push(0xa0 | key.len() as u8);
        bytes.extend(key.as_bytes());
        bytes.push(0xa0 | value.len() as u8);
        bytes.extend(value.as_bytes());
    }
    bytes.extend(b"\xa6tokens\x01\xa9timestamp\xd6\xff\x69\x35\x00\x00");
    let refused = app
        .post_as("/api/events", "application/msgpack", bytes)
        .await;
    let refused = assert_client_error(refused, 400).await;
    assert_eq!(refused["details"]["field"], "timestamp", "{refused}");
    let reason = refused["details"]["reason"].as_str().unwrap();
    assert!(reason.contains("RFC 3339"), "{reason}");
}

#[tokio::test]
async fn a_refused_key_says_what_the_header_must_hold() {
    let app = spawn_app().await;
    let response = reqwest::Client::new()
        .get(format!("{}/api/usage", app.base))
        .header("authorization", "Bearer fmk_nope")
        .send()
        .await
        .unwrap();
    let refused = assert_client_error(response, 401).await;
    assert_eq!(refused["details"]["field"], "Authorization", "{refused}");
    assert!(refused["details"]["reason"].is_string(), "{refused}");
}
