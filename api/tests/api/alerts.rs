//! Tenant admin and quota alerts through the api, with a local server
//! playing Slack and an in-process pipeline.

use std::time::Duration;

use alerts::rules::evaluate;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::{
    TestApp, assert_client_error, env as testing, eventually, fake_slack::FakeSlack, spawn_app,
};

use crate::support::{assert_deleted, slack_webhook};

/// Polls the alert history until `done` holds for it.
async fn wait_for_alerts(
    app: &TestApp,
    tenant: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    eventually("the alerts settled", Duration::from_secs(20), || async {
        let (_, alerts) = app.get_json(&format!("/api/tenants/{tenant}/alerts")).await;
        let alerts = alerts.as_array().cloned().unwrap_or_default();
        if done(&alerts) {
            Ok(alerts)
        } else {
            Err(alerts)
        }
    })
    .await
}

#[tokio::test]
async fn a_tenant_is_created_updated_listed_and_deleted() {
    let app = spawn_app().await;

    let created = app
        .put("/api/tenants/acme", &json!({"monthlyQuota": 5000}))
        .await;
    assert_eq!(created.status().as_u16(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["name"], "acme");
    assert_eq!(created["billingDay"], 1);
    assert_eq!(created["alertThresholds"], json!([80]));

    let updated = app.put("/api/tenants/acme", &json!({"name": "Acme Corp", "monthlyQuota": 9000, "billingDay": 15, "alertThresholds": [100, 50, 80]}))
    .await;
    assert_eq!(updated.status().as_u16(), 200);
    let (_, got) = app.get_json("/api/tenants/acme").await;
    assert_eq!(got["name"], "Acme Corp");
    assert_eq!(got["monthlyQuota"], 9000);
    assert_eq!(got["billingDay"], 15);
    assert_eq!(got["alertThresholds"], json!([50, 80, 100]));
    app.put_tenant("globex", json!({"monthlyQuota": 1})).await;
    let (_, page) = app.get_json("/api/tenants?limit=1&offset=1").await;
    assert_eq!(page["tenants"][0]["id"], "globex");

    assert_eq!(app.delete("/api/tenants/acme").await.status().as_u16(), 204);
    assert_client_error(app.get("/api/tenants/acme").await, 404).await;
    assert_client_error(app.delete("/api/tenants/acme").await, 404).await;
}

#[tokio::test]
async fn bad_tenant_settings_are_400s() {
    let app = spawn_app().await;
    for body in [
        json!({"monthlyQuota": 0}),
        json!({"monthlyQuota": "many"}),
        json!({"monthlyQuota": 10, "billingDay": 29}),
        json!({"monthlyQuota": 10, "billingDay": 0}),
        json!({"monthlyQuota": 10, "alertThresholds": [0]}),
        json!({"monthlyQuota": 10, "alertThresholds": [1001]}),
        json!({"monthlyQuota": 10, "alertThresholds": [80, 80]}),
        json!({"monthlyQuota": 10, "alertThresholds": (1..=11).collect::<Vec<_>>()}),
        json!({"monthlyQuota": 10, "name": "   "}),
        json!({"monthlyQuota": 10, "name": "\u{0}"}),
    ] {
        assert_client_error(app.put("/api/tenants/acme", &body).await, 400).await;
    }
    assert_client_error(
        app.put("/api/tenants/-bad", &json!({"monthlyQuota": 1}))
            .await,
        400,
    )
    .await;
}

#[tokio::test]
async fn a_saved_slack_webhook_is_masked_and_can_be_deleted() {
    let app = spawn_app().await;
    app.put_tenant("acme", json!({"monthlyQuota": 1000})).await;

    let saved = app
        .put(
            "/api/tenants/acme/slack-webhook",
            &json!({"url": "http://127.0.0.1:9/services/T1/B2/secret"}),
        )
        .await;
    assert_eq!(saved.status().as_u16(), 201);
    let (_, hook) = app.get_json("/api/tenants/acme/slack-webhook").await;
    assert_eq!(hook["url"], "http://127.0.0.1:9/services/****");
    assert_eq!(hook["enabled"], true);
    assert!(!hook.to_string().contains("secret"));
    assert_deleted(&app, "/api/tenants/acme/slack-webhook").await;
}

#[tokio::test]
async fn slack_failing_twice_then_rate_limiting_gets_the_alert_delivered_once() {
    let app = spawn_app().await;
    let slack = FakeSlack::start(&[(500, None), (500, None), (429, Some(1)), (200, None)]).await;
    app.put_tenant("acme", json!({"name": "Acme Corp", "monthlyQuota": 1000}))
        .await;
    slack_webhook(&app, "acme", &slack).await;
    let worker = app.env.spawn_pipeline("w");

    app.post_event(&json!({"tenant": "acme", "feature": "gpt-4o", "tokens": 850}))
        .await;
    let alerts = wait_for_alerts(&app, "acme", |a| {
        a.first().is_some_and(|a| a["status"] == "delivered")
    })
    .await;

    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["threshold"], 80);
    assert_eq!(alerts[0]["usageTokens"], 850);
    assert_eq!(alerts[0]["attempts"], 4);
    assert!(
        alerts[0]["lastError"].as_str().unwrap().contains("429"),
        "{}",
        alerts[0]
    );
    let statuses: Vec<u16> = slack.received().iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [500, 500, 429, 200]);
    let delivered = slack.delivered();
    assert_eq!(delivered.len(), 1);
    let text = delivered[0]["text"].as_str().unwrap();
    assert!(
        text.contains("Acme Corp") && text.contains("85.0%") && text.contains("850 / 1,000"),
        "{text}"
    );
    assert!(delivered[0]["blocks"].to_string().contains("gpt-4o"));
    worker.stop().await;
}

#[tokio::test]
async fn a_tenant_without_a_webhook_gets_its_alert_recorded_as_no_webhook() {
    let app = spawn_app().await;
    app.put_tenant("acme", json!({"monthlyQuota": 1000})).await;
    let worker = app.env.spawn_pipeline("w");

    app.post_event(&json!({"tenant": "acme", "feature": "gpt-4o", "tokens": 900}))
        .await;
    let alerts = wait_for_alerts(&app, "acme", |a| !a.is_empty()).await;

    assert_eq!(alerts[0]["status"], "no_webhook");
    assert_eq!(alerts[0]["attempts"], 0);
    worker.stop().await;
}

#[tokio::test]
async fn raising_the_quota_rearms_a_threshold_and_lowering_it_fires_at_once() {
    let app = spawn_app().await;
    app.put_tenant("acme", json!({"monthlyQuota": 1000})).await;
    let events = [testing::event("acme", "1", "gpt-4o", 850, Utc::now())];
    app.env.write(&events, 1000).await;
    let (_, fired) = app.get_json("/api/tenants/acme/alerts").await;
    assert_eq!(fired.as_array().unwrap().len(), 1);

    app.put_tenant("acme", json!({"monthlyQuota": 2000})).await;
    let (_, rearmed) = app.get_json("/api/tenants/acme/alerts").await;
    app.put_tenant("acme", json!({"monthlyQuota": 1000})).await;
    let (_, refired) = app.get_json("/api/tenants/acme/alerts").await;

    assert_eq!(
        rearmed,
        json!([]),
        "85 % of the old quota is 42.5 % of the new one"
    );
    assert_eq!(refired.as_array().unwrap().len(), 1);
    assert_eq!(refired[0]["quota"], 1000);
}

#[tokio::test]
async fn a_new_billing_period_rearms_every_threshold() {
    let app = spawn_app().await;
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    app.put_tenant(
        "acme",
        json!({"monthlyQuota": 100, "alertThresholds": [80, 100]}),
    )
    .await;
    let events = [
        testing::event("acme", "sep", "gpt-4o", 90, at("2026-09-10T12:00:00Z")),
        testing::event("acme", "oct", "gpt-4o", 120, at("2026-10-10T12:00:00Z")),
    ];
    app.env.write(&events, 100).await;

    for now in [
        "2026-09-20T00:00:00Z",
        "2026-09-30T23:00:00Z",
        "2026-10-20T00:00:00Z",
        "2026-10-21T00:00:00Z",
    ] {
        evaluate(&app.env.db, &["acme".to_owned()], at(now))
            .await
            .unwrap();
    }

    let (_, alerts) = app.get_json("/api/tenants/acme/alerts").await;
    let mut fired: Vec<(String, i64)> = alerts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["periodStart"].as_str().unwrap()[..7].to_owned(),
                a["threshold"].as_i64().unwrap(),
            )
        })
        .collect();
    fired.sort();
    assert_eq!(
        fired,
        [
            ("2026-09".to_owned(), 80),
            ("2026-10".to_owned(), 80),
            ("2026-10".to_owned(), 100)
        ]
    );
}

#[tokio::test]
async fn the_webhook_test_reports_what_slack_answered() {
    let app = spawn_app().await;
    let slack = FakeSlack::start(&[(200, None), (404, None)]).await;
    app.put_tenant("acme", json!({"name": "Acme", "monthlyQuota": 10}))
        .await;
    assert_client_error(
        app.send(Method::POST, "/api/tenants/acme/slack-webhook/test", None)
            .await,
        404,
    )
    .await;
    slack_webhook(&app, "acme", &slack).await;

    let test = || async {
        let response = app
            .send(Method::POST, "/api/tenants/acme/slack-webhook/test", None)
            .await;
        assert_eq!(response.status().as_u16(), 200);
        response.json::<Value>().await.unwrap()
    };
    let ok = test().await;
    let gone = test().await;

    assert_eq!(ok["delivered"], true);
    assert_eq!(gone["delivered"], false);
    assert!(gone["detail"].as_str().unwrap().starts_with("404"));
    assert!(
        slack.received()[0].1["text"]
            .as_str()
            .unwrap()
            .contains("Acme")
    );
}
