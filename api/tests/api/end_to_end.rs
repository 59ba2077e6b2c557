//! The whole chain: http → stream → two pipeline workers → rollups → usage.

use std::{collections::HashMap, time::Duration};

use serde_json::json;

use testkit::{json, spawn_app};

#[tokio::test]
async fn three_thousand_events_with_repeated_ids_show_exact_totals_with_two_workers() {
    let app = spawn_app().await;
    let a = app.env.spawn_pipeline("worker-a");
    let b = app.env.spawn_pipeline("worker-b");
    let tenants = ["acme-corp", "globex-inc", "initech-llc"];
    let features = ["gpt-4-turbo", "gpt-4o", "claude-3-opus", "claude-3-sonnet"];
    let events: Vec<_> = (0..2700)
        .map(|i| {
            json!({
                "tenant": tenants[i % 3],
                "feature": features[i % 4],
                "tokens": 100 + (i * 37) % 5000,
                "id": format!("evt-{i}"),
            })
        })
        .collect();
    let mut expected: HashMap<&str, i64> = HashMap::new();
    for e in &events {
        *expected
            .entry(tenants.iter().find(|t| **t == e["tenant"]).unwrap())
            .or_default() += e["tokens"].as_i64().unwrap();
    }

    // 300 single posts and 2400 in batches of 100 ...
    for event in &events[..300] {
        app.post_event(event).await;
    }
    for chunk in events[300..].chunks(100) {
        let response = app
            .post("/api/events/batch", &json!({ "events": chunk }))
            .await;
        assert_eq!(response.status().as_u16(), 202);
    }
    // ... and 300 repeats of earlier ids (10 % of all posts), single and batched.
    for event in events.iter().step_by(18).take(150) {
        app.post_event(event).await;
    }
    let repeats: Vec<_> = events.iter().skip(5).step_by(18).take(150).collect();
    let response = app
        .post("/api/events/batch", &json!({ "events": repeats }))
        .await;
    assert_eq!(response.status().as_u16(), 202);

    for (tenant, tokens) in &expected {
        let usage = app
            .wait_for_total(tenant, *tokens, Duration::from_secs(10))
            .await;
        assert_eq!(json::sum(&usage["byFeature"], "totalTokens"), *tokens);
    }
    assert!(app.env.drained(Duration::from_secs(10)).await);
    tokio::join!(a.stop(), b.stop());
}
