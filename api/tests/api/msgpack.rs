//! MessagePack request bodies: the same events, fields and rules as JSON,
//! under `application/msgpack` and `application/vnd.msgpack`, answered in
//! JSON; malformed or too deeply nested bodies get a 400 that says why.

use serde_json::{Value, json};
use testkit::{assert_client_error, content_type, spawn_app};

/// An event time the api takes: an hour ago, to the second.
fn recent() -> String {
    (chrono::Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn msgpack(value: &Value) -> Vec<u8> {
    rmp_serde::to_vec_named(value).unwrap()
}

#[tokio::test]
async fn a_msgpack_event_is_accepted_and_answered_in_json() {
    let app = spawn_app().await;
    let event = json!({"tenant": "acme", "feature": "gpt-4o", "tokens": 1500,
                       "id": "mp-1", "timestamp": recent()});

    let response = app
        .post_as("/api/events", "application/msgpack", msgpack(&event))
        .await;

    assert_eq!(response.status().as_u16(), 202);
    assert!(content_type(&response).starts_with("application/json"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["eventId"], "mp-1");
    let records = app.env.records().await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].tenant.as_str(), records[0].tokens),
        ("acme", 1500)
    );
    let at = chrono::DateTime::parse_from_rfc3339(event["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(records[0].occurred_ms, at.timestamp_millis());
}

#[tokio::test]
async fn a_vnd_msgpack_batch_is_stored_whole() {
    let app = spawn_app().await;
    let batch = json!({"events": [
        {"tenant": "acme", "feature": "gpt-4o", "tokens": 1},
        {"tenant": "acme", "feature": "gpt-4o", "tokens": 2},
        {"tenant": "globex", "feature": "claude", "tokens": 3},
    ]});

    let response = app
        .post_as(
            "/api/events/batch",
            "application/vnd.msgpack",
            msgpack(&batch),
        )
        .await;

    assert_eq!(response.status().as_u16(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 3);
    let tokens: Vec<i64> = app.env.records().await.iter().map(|r| r.tokens).collect();
    assert_eq!(tokens, [1, 2, 3]);
}

/// Each bad event gets the same status and body in both formats.
#[tokio::test]
async fn the_rules_and_their_answers_are_those_of_json() {
    let app = spawn_app().await;
    let cases = [
        (
            "/api/events",
            json!({"tenant": "acme", "feature": "gpt-4o", "tokens": 0}),
        ),
        (
            "/api/events",
            json!({"tenant": "-acme", "feature": "gpt-4o", "tokens": 1}),
        ),
        (
            "/api/events",
            json!({"tenant": "acme", "feature": "a b", "tokens": 1}),
        ),
        (
            "/api/events",
            json!({"tenant": "acme", "feature": "gpt-4o", "tokens": "1"}),
        ),
        (
            "/api/events",
            json!({"tenant": "acme", "feature": "gpt-4o"}),
        ),
        (
            "/api/events",
            json!({"tenant": "acme", "feature": "gpt-4o", "tokens": 1, "timestamp": "yesterday"}),
        ),
        (
            "/api/events/batch",
            json!({"events": [{"tenant": "acme", "feature": "gpt-4o", "tokens": 1},
                              {"tenant": "acme", "feature": "gpt-4o", "tokens": -5}]}),
        ),
        ("/api/events/batch", json!({"events": []})),
    ];
    for (path, body) in cases {
        let as_json = app.post(path, &body).await;
        let status = as_json.status().as_u16();
        let json_answer: Value = as_json.json().await.unwrap();
        let as_msgpack = app
            .post_as(path, "application/msgpack", msgpack(&body))
            .await;
        assert_eq!(as_msgpack.status().as_u16(), status, "{body}");
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            as_msgpack.json::<Value>().await.unwrap(),
            json_answer,
            "{body}"
        );
    }
    assert!(app.env.records().await.is_empty());
}

#[tokio::test]
async fn malformed_or_deep_msgpack_is_refused_with_the_reason() {
    let app = spawn_app().await;
    let mut deep = vec![0x81, 0xa6];
    deep.extend(b"events");
    deep.extend([0x91; 30]);
    deep.push(0x00);
    let mut trailing = msgpack(&json!({"tenant": "acme", "feature": "gpt-4o", "tokens": 1}));
    trailing.push(0x01);
    for (name, bytes) in [
        ("reserved byte", vec![0xc1]),
        ("truncated map", vec![0x83, 0xa6]),
        ("binary where a map belongs", vec![0xc4, 0x02, 0x01, 0x02]),
        ("nesting", deep),
        ("trailing bytes", trailing),
        ("empty", Vec::new()),
    ] {
        let response = app
            .post_as("/api/events", "application/msgpack", bytes)
            .await;
        let body = assert_client_error(response, 400).await;
        let reason = body["details"]["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("MessagePack") || reason == "the body is empty",
            "{name}: {body}"
        );
    }
    assert!(app.env.records().await.is_empty());
}

#[tokio::test]
async fn the_spec_offers_both_formats_for_both_routes() {
    let app = spawn_app().await;
    let (_, spec) = app.get_json("/openapi.json").await;
    for path in ["/api/events", "/api/events/batch"] {
        let content = &spec["paths"][path]["post"]["requestBody"]["content"];
        for media in [
            "application/json; charset=utf-8",
            "application/msgpack",
            "application/vnd.msgpack",
        ] {
            assert!(content.get(media).is_some(), "{path} {media}: {content}");
        }
    }
}
