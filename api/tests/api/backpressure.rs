//! Back-pressure and idempotency through the api, in-process with real
//! services: the high-water mark, one client id posted many times at once,
//! and scaling from one to three workers.

use std::time::Duration;

use serde_json::json;

use testkit::{spawn_app, spawn_app_with};

#[tokio::test]
async fn above_the_high_water_mark_ingest_is_refused_and_nothing_unacked_is_trimmed() {
    let app = spawn_app_with(|config| config.stream_high_water = 5).await;
    let event = |i: usize| json!({"tenant": "acme", "feature": "gpt-4o", "tokens": 10, "id": format!("e{i}")});
    for i in 0..5 {
        assert_eq!(
            app.post("/api/events", &event(i)).await.status().as_u16(),
            202
        );
    }
    tokio::time::sleep(Duration::from_millis(400)).await;

    let refused = app.post("/api/events", &event(5)).await;

    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        app.env.stream_len().await,
        5,
        "nothing unacknowledged was trimmed to make room"
    );

    // The pipeline catches up, the janitor trims what it acknowledged, and
    // ingest resumes.
    let worker = app.env.spawn_pipeline("w");
    app.wait_for_total("acme", 50, Duration::from_secs(10))
        .await;
    testkit::eventually("ingest resumed", Duration::from_secs(10), || async {
        match app.post("/api/events", &event(5)).await.status().as_u16() {
            202 => Ok(()),
            status => Err(status),
        }
    })
    .await;
    app.wait_for_total("acme", 60, Duration::from_secs(10))
        .await;
    worker.stop().await;
}

#[tokio::test]
async fn one_client_id_posted_concurrently_and_retried_is_counted_once() {
    let app = spawn_app().await;
    let worker = app.env.spawn_pipeline("w");
    let event = json!({"tenant": "acme", "feature": "gpt-4o", "tokens": 777, "id": "charge-1"});

    let posts = (0..50).map(|_| {
        let client = app.client.clone();
        let url = format!("{}/api/events", app.base);
        let event = event.clone();
        tokio::spawn(async move {
            // A client that gives up quickly and retries, as after timeouts.
            for _ in 0..3 {
                let _ = client
                    .post(&url)
                    .json(&event)
                    .timeout(Duration::from_millis(1))
                    .send()
                    .await;
            }
            client
                .post(&url)
                .json(&event)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    });
    for post in posts {
        assert_eq!(post.await.unwrap(), 202);
    }
    let batch = json!({"events": [event.clone(), event.clone(), event]});
    assert_eq!(
        app.post("/api/events/batch", &batch)
            .await
            .status()
            .as_u16(),
        202
    );

    assert!(app.env.drained(Duration::from_secs(20)).await);
    let (_, usage) = app.get_json("/api/usage/acme").await;
    assert_eq!(usage["totalTokens"], 777);
    worker.stop().await;
}

#[tokio::test]
async fn one_worker_then_three_give_exact_totals() {
    let app = spawn_app().await;

    let one = app.env.spawn_pipeline("solo");
    post_and_count(&app, 0..2000).await;
    one.stop().await;

    let workers: Vec<_> = (0..3)
        .map(|n| app.env.spawn_pipeline(&format!("replica-{n}")))
        .collect();
    post_and_count(&app, 2000..6000).await;
    assert!(app.env.drained(Duration::from_secs(10)).await);
    for worker in workers {
        worker.stop().await;
    }
}

/// Posts events `ids` in batches of 500 (spread over tenants `t0`..`t3`,
/// event `i` worth `i + 1` tokens), then waits until every tenant's total
/// counts all events up to `ids.end`.
async fn post_and_count(app: &testkit::TestApp, ids: std::ops::Range<usize>) {
    for from in ids.clone().step_by(500) {
        let events: Vec<_> = (from..from + 500)
            .map(|i| json!({"tenant": format!("t{}", i % 4), "feature": "gpt-4o", "tokens": i + 1, "id": i.to_string()}))
            .collect();
        let response = app
            .post("/api/events/batch", &json!({ "events": events }))
            .await;
        assert_eq!(response.status().as_u16(), 202);
    }
    for t in 0..4 {
        let expected: i64 = (0..ids.end)
            .filter(|i| i % 4 == t)
            .map(|i| i as i64 + 1)
            .sum();
        app.wait_for_total(&format!("t{t}"), expected, Duration::from_secs(15))
            .await;
    }
}
