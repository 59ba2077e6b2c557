use redis::AsyncCommands;
use serde_json::json;

use testkit::{spawn_app, spawn_app_with};

#[tokio::test]
async fn an_accepted_event_is_in_the_stream_with_its_generated_id() {
    let app = spawn_app().await;

    let body = app
        .post_event(&json!({"tenant": "acme-corp", "feature": "gpt-4-turbo", "tokens": 1500}))
        .await;

    assert_eq!(body["success"], true);
    let records = app.env.records().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].id, body["eventId"].as_str().unwrap());
    assert_eq!(records[0].tenant, "acme-corp");
    assert_eq!(records[0].feature, "gpt-4-turbo");
    assert_eq!(records[0].tokens, 1500);
}

#[tokio::test]
async fn a_client_id_and_timestamp_are_kept() {
    let app = spawn_app().await;
    let at = chrono::Utc::now() - chrono::Duration::days(2);

    let body = app
        .post_event(
            &json!({"tenant": "acme", "feature": "anthropic/claude-3.5-sonnet", "tokens": 7,
                    "id": "call 42", "timestamp": at.to_rfc3339()}),
        )
        .await;

    assert_eq!(body["eventId"], "call 42");
    let records = app.env.records().await;
    assert_eq!(records[0].occurred_ms, at.timestamp_millis());
}

#[tokio::test]
async fn a_batch_is_stored_whole_with_ids_in_order() {
    let app = spawn_app().await;
    let events: Vec<_> = (0..1000)
        .map(|i| json!({"tenant": "acme", "feature": "gpt-4o", "tokens": i + 1}))
        .collect();

    let response = app
        .post("/api/events/batch", &json!({ "events": events }))
        .await;

    assert_eq!(response.status().as_u16(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 1000);
    let ids: Vec<String> = serde_json::from_value(body["eventIds"].clone()).unwrap();
    let records = app.env.records().await;
    assert_eq!(
        records.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        ids
    );
    assert_eq!(records[999].tokens, 1000);
}

#[tokio::test]
async fn with_valkey_down_ingest_answers_503_with_retry_after_and_ready_says_so() {
    let app =
        spawn_app_with(|config| config.valkey.valkey_url = "redis://127.0.0.1:1".into()).await;

    let response = app
        .post(
            "/api/events",
            &json!({"tenant": "acme", "feature": "gpt-4o", "tokens": 1}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let batch = app
        .post(
            "/api/events/batch",
            &json!({"events": [{"tenant": "acme", "feature": "gpt-4o", "tokens": 1}]}),
        )
        .await;
    assert_eq!(batch.status().as_u16(), 503);

    let (status, body) = app.get_json("/api/ready").await;
    assert_eq!(status, 503);
    assert_eq!(body["valkey"], false);
    assert_eq!(body["database"], true);
}

#[tokio::test]
async fn a_stream_lost_by_valkey_is_refused_loudly_then_recreated() {
    let app = spawn_app().await;
    let mut conn = app.env.valkey().await;
    let _: () = conn.del(&app.env.stream).await.unwrap();
    let event = json!({"tenant": "acme", "feature": "gpt-4o", "tokens": 1});

    let refused = app.post("/api/events", &event).await;
    let accepted = app.post("/api/events", &event).await;

    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(accepted.status().as_u16(), 202);
    let groups: redis::streams::StreamInfoGroupsReply =
        conn.xinfo_groups(&app.env.stream).await.unwrap();
    assert_eq!(groups.groups[0].name, app.env.group);
}
