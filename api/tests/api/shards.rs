//! Several stream shards on one Valkey node, and replica-acknowledged
//! ingest (`FLAGMETER_VALKEY_MIN_REPLICAS`) against a node without replicas.

use std::time::Duration;

use serde_json::json;
use testkit::{assert_client_error, env::Replica, spawn_app_with};

#[tokio::test]
async fn three_shards_on_one_node_take_requests_in_turn_keep_a_batch_whole_and_count_all() {
    let app = spawn_app_with(|config| config.valkey.stream_shards = 3).await;
    let event = |i: usize| json!({"tenant": "acme", "feature": "gpt-4o", "tokens": 10, "id": format!("s{i}")});
    for i in 0..30 {
        assert_eq!(
            app.post("/api/events", &event(i)).await.status().as_u16(),
            202
        );
    }
    let batch: Vec<_> = (30..60).map(event).collect();
    let response = app
        .post("/api/events/batch", &json!({ "events": batch }))
        .await;
    assert_eq!(response.status().as_u16(), 202);

    let shards = stream::config::ValkeyArgs {
        stream_shards: 3,
        ..app.env.valkey_args()
    }
    .shards();
    let mut conn = app.env.valkey().await;
    let mut lengths = Vec::new();
    for keys in shards.all() {
        assert_ne!(keys.stream, app.env.stream);
        lengths.push(
            redis::AsyncCommands::xlen::<_, u64>(&mut conn, &keys.stream)
                .await
                .unwrap(),
        );
    }
    lengths.sort();
    assert_eq!(
        lengths,
        [10, 10, 40],
        "ten singles a shard, the batch in one"
    );
    let unsharded: bool = redis::AsyncCommands::exists(&mut conn, &app.env.stream)
        .await
        .unwrap();
    assert!(!unsharded, "the unsharded key is not used");

    let worker = Replica::start(pipeline::app::PipelineConfig {
        valkey: stream::config::ValkeyArgs {
            stream_shards: 3,
            ..app.env.valkey_args()
        },
        ..app.env.pipeline_config("sharded")
    });
    app.wait_for_total("acme", 600, Duration::from_secs(20))
        .await;
    worker.stop().await;
}

#[tokio::test]
async fn without_the_replicas_asked_for_ingest_answers_503_with_retry_after() {
    let app = spawn_app_with(|config| {
        config.valkey_min_replicas = 1;
        config.valkey_wait_ms = 100;
    })
    .await;
    let event = json!({"tenant": "acme", "feature": "gpt-4o", "tokens": 10, "id": "w1"});

    let refused = app.post("/api/events", &event).await;
    assert_eq!(refused.headers()["retry-after"], "1");
    let body = assert_client_error(refused, 503).await;
    assert!(
        body["error"].as_str().unwrap().contains("replicas"),
        "{body}"
    );
    let batch = app
        .post("/api/events/batch", &json!({ "events": [event] }))
        .await;
    assert_eq!(batch.status().as_u16(), 503);
}
