//! Voids through the api, the stream, a pipeline replica and the ledger:
//! after the event, before it, twice, a retry of a voided event, the
//! explorer and time series, validation, and alerts that stay as sent.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::{TestApp, assert_client_error, eventually, json, spawn_app};

async fn event(app: &TestApp, id: &str, tokens: i64) {
    app.post_event(&json!({"tenant": "acme", "id": id, "feature": "gpt-4o", "tokens": tokens}))
        .await;
}

async fn void(app: &TestApp, id: &str) -> Value {
    let sent = app
        .post("/api/events/void", &json!({"tenant": "acme", "id": id}))
        .await;
    assert_eq!(sent.status().as_u16(), 202);
    sent.json().await.unwrap()
}

/// Waits until the pipeline has applied everything sent so far.
async fn drained(app: &TestApp) {
    assert!(
        app.env.drained(Duration::from_secs(20)).await,
        "the stream drains"
    );
}

#[tokio::test]
async fn voids_in_either_order_and_twice_leave_exact_totals() {
    let app = spawn_app().await;
    let worker = app.env.spawn_pipeline("w");

    event(&app, "kept", 100).await;
    event(&app, "voided-after", 40).await;
    app.wait_for_total("acme", 140, Duration::from_secs(20))
        .await;
    let answer = void(&app, "voided-after").await;
    void(&app, "voided-before").await;
    void(&app, "voided-after").await;
    drained(&app).await;
    event(&app, "voided-before", 7).await;
    void(&app, "voided-before").await;
    // A client retrying the voided event: it stays voided.
    event(&app, "voided-after", 40).await;
    void(&app, "never-sent").await;
    drained(&app).await;
    worker.stop().await;

    assert_eq!(
        answer,
        json!({"success": true, "tenant": "acme", "id": "voided-after"})
    );
    let usage = app
        .wait_for_total("acme", 100, Duration::from_secs(5))
        .await;
    assert_eq!(json::by_feature(&usage), [("gpt-4o", 100)]);
    let (_, series) = app
        .get_json("/api/usage/acme/timeseries?granularity=hour")
        .await;
    let points = &series["points"];
    assert_eq!(
        (
            json::sum(points, "totalTokens"),
            json::sum(points, "eventCount")
        ),
        (100, 1)
    );
    let (_, page) = app.get_json("/api/events?tenant=acme").await;
    let listed: Vec<(&str, bool)> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e["voided"].as_bool().unwrap()))
        .collect();
    let mut listed = listed;
    listed.sort();
    assert_eq!(
        listed,
        [("kept", false), ("voided-after", true)],
        "tombstones are not listed"
    );
}

#[tokio::test]
async fn a_batch_of_voids_is_applied_and_bad_voids_are_400s_naming_the_field() {
    let app = spawn_app().await;
    let worker = app.env.spawn_pipeline("w");
    for (id, tokens) in [("a", 1), ("b", 2), ("c", 4)] {
        event(&app, id, tokens).await;
    }
    app.wait_for_total("acme", 7, Duration::from_secs(20)).await;

    let batch = app
        .post(
            "/api/events/void/batch",
            &json!({"voids": [{"tenant": "acme", "id": "a"}, {"tenant": "acme", "id": "c"}]}),
        )
        .await;
    assert_eq!(batch.status().as_u16(), 202);
    assert_eq!(batch.json::<Value>().await.unwrap(), json!({"accepted": 2}));
    app.wait_for_total("acme", 2, Duration::from_secs(20)).await;
    worker.stop().await;

    for body in [
        json!({"tenant": "acme"}),
        json!({"id": "a"}),
        json!({"tenant": "-bad", "id": "a"}),
        json!({"tenant": "acme", "id": ""}),
        json!({"tenant": "acme", "id": "x".repeat(129)}),
        json!({"tenant": "acme", "id": 5}),
    ] {
        let refused = assert_client_error(app.post("/api/events/void", &body).await, 400).await;
        let text = refused.to_string();
        assert!(
            text.contains("tenant") || text.contains("id"),
            "{body}: {text}"
        );
    }
    let refused = assert_client_error(
        app.post(
            "/api/events/void/batch",
            &json!({"voids": [{"tenant": "acme", "id": "ok"}, {"tenant": "b a d", "id": "x"}]}),
        )
        .await,
        400,
    )
    .await;
    assert!(refused.to_string().contains("tenant"), "{refused}");
}

#[tokio::test]
async fn usage_that_drops_below_a_threshold_fires_nothing_and_rearms_nothing() {
    let app = spawn_app().await;
    app.put_tenant("acme", json!({"monthlyQuota": 1000})).await;
    let worker = app.env.spawn_pipeline("w");
    event(&app, "big", 900).await;
    let alerts = eventually("the alert fired", Duration::from_secs(20), || async {
        let (_, alerts) = app.get_json("/api/tenants/acme/alerts").await;
        match alerts.as_array().map(Vec::len) {
            Some(1) => Ok(alerts),
            _ => Err(alerts),
        }
    })
    .await;

    void(&app, "big").await;
    app.wait_for_total("acme", 0, Duration::from_secs(20)).await;
    event(&app, "again", 850).await;
    app.wait_for_total("acme", 850, Duration::from_secs(20))
        .await;
    drained(&app).await;
    worker.stop().await;

    let (_, after) = app.get_json("/api/tenants/acme/alerts").await;
    assert_eq!(after.as_array().unwrap().len(), 1, "{after}");
    assert_eq!(
        after[0]["id"], alerts[0]["id"],
        "the alert sent stays, once"
    );
    assert_eq!(after[0]["usageTokens"], 900);
}
