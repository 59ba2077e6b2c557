//! Every bad input gets a JSON 4xx naming the problem; nothing is stored.

use serde_json::{Value, json};

use testkit::{TEST_BODY_LIMIT, TestApp, assert_client_error, spawn_app, spawn_app_with};

fn valid() -> Value {
    json!({"tenant": "acme-corp", "feature": "gpt-4o", "tokens": 100})
}

fn with(field: &str, value: Value) -> Value {
    let mut event = valid();
    event[field] = value;
    event
}

fn without(field: &str) -> Value {
    let mut event = valid();
    event.as_object_mut().unwrap().remove(field);
    event
}

#[tokio::test]
async fn every_malformed_event_is_a_400_naming_the_problem() {
    let app = spawn_app().await;
    let now = chrono::Utc::now();
    // Each with one field set to a bad value, which the error names.
    let bad_fields: Vec<(&str, &str, Value)> = vec![
        ("empty tenant", "tenant", json!("")),
        ("tenant too long", "tenant", json!("a".repeat(65))),
        ("tenant with space", "tenant", json!("acme corp")),
        ("tenant starting with a dash", "tenant", json!("-acme")),
        ("tenant not a string", "tenant", json!(5)),
        ("feature too long", "feature", json!("f".repeat(129))),
        ("feature with space", "feature", json!("gpt 4")),
        ("feature with control", "feature", json!("gpt\n4")),
        ("zero tokens", "tokens", json!(0)),
        ("negative tokens", "tokens", json!(-3)),
        ("too many tokens", "tokens", json!(1_000_000_001u64)),
        ("fractional tokens", "tokens", json!(1.5)),
        ("tokens as a string", "tokens", json!("100")),
        ("huge tokens", "tokens", json!(1e30)),
        ("empty id", "id", json!("")),
        ("id too long", "id", json!("i".repeat(129))),
        ("id with non-ASCII", "id", json!("é")),
        ("id not a string", "id", json!(12)),
        ("feature not a string", "feature", json!(["gpt-4o"])),
        ("timestamp as a number", "timestamp", json!(1_763_800_000)),
        ("timestamp not RFC 3339", "timestamp", json!("yesterday")),
        (
            "timestamp 36 days ago",
            "timestamp",
            json!((now - chrono::Duration::days(36)).to_rfc3339()),
        ),
        (
            "timestamp 10 minutes ahead",
            "timestamp",
            json!((now + chrono::Duration::minutes(10)).to_rfc3339()),
        ),
    ];
    let mut cases: Vec<(&str, Value, &str)> = vec![
        ("missing tenant", without("tenant"), "tenant"),
        ("missing feature", without("feature"), "feature"),
        ("missing tokens", without("tokens"), "tokens"),
        ("an array", json!([valid()]), ""),
        ("a number", json!(42), ""),
    ];
    cases.extend(
        bad_fields
            .into_iter()
            .map(|(case, field, value)| (case, with(field, value), field)),
    );
    for (case, body, field) in cases {
        let response = app.post("/api/events", &body).await;
        assert_eq!(response.status().as_u16(), 400, "{case}");
        let error = assert_client_error(response, 400).await;
        assert!(error.to_string().contains(field), "{case}: {error}");
    }

    assert_eq!(app.env.stream_len().await, 0, "nothing was stored");
}

#[tokio::test]
async fn bodies_that_are_not_json_events_are_refused() {
    let app = spawn_app().await;
    for body in ["", "{", "{\"tenant\": ", "not json", "null", "\u{0}"] {
        let response = app.post_raw("/api/events", body).await;
        assert_client_error(response, 400).await;
    }
    let response = app
        .client
        .post(format!("{}/api/events", app.base))
        .header("content-type", "text/plain")
        .body(valid().to_string())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error());
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn one_bad_event_refuses_the_whole_batch_and_says_which() {
    let app = spawn_app().await;

    let shape = app
        .post(
            "/api/events/batch",
            &json!({"events": [valid(), valid(), with("tokens", json!(0))]}),
        )
        .await;
    let rule = app
        .post(
            "/api/events/batch",
            &json!({"events": [valid(), with("timestamp", json!("2001-01-01T00:00:00Z")), valid()]}),
        )
        .await;

    let shape = assert_client_error(shape, 400).await;
    assert_eq!(
        shape["details"],
        json!({"index": 2, "field": "tokens", "reason": "must be an integer from 1 to 1000000000"}),
    );
    let rule = assert_client_error(rule, 400).await;
    assert_eq!(rule["details"]["index"], 1, "{rule}");
    assert_eq!(rule["details"]["field"], "timestamp", "{rule}");
    assert_eq!(
        app.env.stream_len().await,
        0,
        "nothing of a refused batch is stored"
    );
}

#[tokio::test]
async fn batches_must_hold_1_to_1000_events() {
    let app = spawn_app().await;
    let too_many: Vec<_> = (0..1001).map(|_| valid()).collect();
    for body in [
        json!({"events": []}),
        json!({"events": too_many}),
        json!({}),
        json!({"events": {}}),
    ] {
        let response = app.post("/api/events/batch", &body).await;
        assert_client_error(response, 400).await;
    }
}

#[tokio::test]
async fn an_oversized_body_is_a_413_with_or_without_content_length() {
    let app = spawn_app().await;
    let big = format!("{{\"events\": [\"{}\"]}}", "x".repeat(TEST_BODY_LIMIT));
    assert_oversized_refused(&app, big).await;
}

#[tokio::test]
async fn an_8_mib_body_is_refused_under_the_default_1_mib_limit() {
    let app = spawn_app_with(|config| config.max_body_bytes = 1024 * 1024).await;
    let big = format!("{{\"events\": [\"{}\"]}}", "x".repeat(8 * 1024 * 1024));
    assert_oversized_refused(&app, big).await;
}

/// Sends `big` with `Content-Length` and chunked: both are a 413, and the
/// api still answers afterwards.
async fn assert_oversized_refused(app: &TestApp, big: String) {
    let declared = app.post_raw("/api/events/batch", big.clone()).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
        .into_bytes()
        .chunks(8192)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let chunked = app
        .post_raw(
            "/api/events/batch",
            reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
        )
        .await;

    assert_client_error(declared, 413).await;
    assert_client_error(chunked, 413).await;
    let (status, _) = app.get_json("/api/health").await;
    assert_eq!(status, 200, "the api is still up");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = spawn_app().await;
    assert_client_error(app.get("/api/nope").await, 404).await;
    assert_client_error(app.get("/api/events/batch").await, 405).await;
}

#[tokio::test]
async fn made_up_methods_do_not_become_metric_labels() {
    let app = spawn_app().await;
    let method = reqwest::Method::from_bytes(b"MADEUPMETHOD").unwrap();
    let response = app
        .client
        .request(method, format!("{}/api/health", app.base))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error());
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(!metrics.contains("MADEUPMETHOD"));
    assert!(metrics.contains("method=\"other\""), "{metrics}");
}

/// The rule moved from the handlers into the parameter types; the answer is
/// the one the handlers gave, body for body.
#[tokio::test]
async fn a_malformed_tenant_or_feature_in_a_path_or_query_gets_the_same_400_as_before() {
    let app = spawn_app().await;
    let cases = [
        ("-acme", "must start with a letter or digit"),
        (
            "acme%20corp",
            "may contain only letters, digits, '.', '_' and '-'",
        ),
    ];
    for (tenant, reason) in cases {
        let expected = json!({
            "error": "invalid tenant",
            "details": { "field": "tenant", "reason": reason },
        });
        for path in [
            format!("/api/usage/{tenant}"),
            format!("/api/usage/{tenant}/timeseries"),
            format!("/api/tenants/{tenant}"),
            format!("/api/tenants/{tenant}/slack-webhook"),
            format!("/api/tenants/{tenant}/alerts"),
        ] {
            let (status, body) = app.get_json(&path).await;
            assert_eq!((status, &body), (400, &expected), "{path}");
        }
        let saved = app
            .put(
                &format!("/api/tenants/{tenant}"),
                &json!({ "monthlyQuota": 1000 }),
            )
            .await;
        assert_eq!(saved.status().as_u16(), 400);
        assert_eq!(saved.json::<Value>().await.unwrap(), expected);
    }
    let (status, body) = app
        .get_json("/api/usage/acme/timeseries?feature=gpt%204")
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({
            "error": "invalid feature",
            "details": { "field": "feature", "reason": "may contain only printable ASCII without spaces" },
        })
    );
}
