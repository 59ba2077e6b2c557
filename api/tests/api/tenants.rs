//! Tenant writes as documented: a partial `PUT` keeps what it does not
//! name, a new tenant takes the defaults, every refused field is named, a
//! deleted tenant's billing history stays readable, and the Slack webhook's
//! `PUT` tells creation (201) from replacement (200).

use alerts::rules::evaluate;
use chrono::{Duration as Span, Utc};
use serde_json::{Value, json};
use testkit::{TestApp, assert_client_error, env as testing, spawn_app};

/// The field a 400 names.
fn named_field(body: &Value) -> String {
    body["details"]["field"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn tenant(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get_json(&format!("/api/tenants/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn a_put_naming_one_field_keeps_every_other() {
    let app = spawn_app().await;
    app.put_tenant(
        "acme",
        json!({"name": "Acme Corp", "monthlyQuota": 9000, "billingDay": 15,
               "timezone": "America/New_York", "alertThresholds": [50, 100],
               "monthlyBudget": "500.00"}),
    )
    .await;

    let response = app
        .put("/api/tenants/acme", &json!({"timezone": "UTC"}))
        .await;

    assert_eq!(response.status().as_u16(), 200);
    let got = tenant(&app, "acme").await;
    assert_eq!(got["timezone"], "UTC");
    assert_eq!(got["name"], "Acme Corp");
    assert_eq!(got["monthlyQuota"], 9000);
    assert_eq!(got["billingDay"], 15);
    assert_eq!(got["alertThresholds"], json!([50, 100]));
    assert_eq!(got["monthlyBudget"], "500.000000");
}

#[tokio::test]
async fn a_tenant_created_by_put_takes_the_defaults_for_what_it_omits() {
    let app = spawn_app().await;

    let response = app
        .put("/api/tenants/acme", &json!({"billingDay": 5}))
        .await;

    assert_eq!(response.status().as_u16(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["billingDay"], 5);
    assert_eq!(created["name"], "acme");
    assert_eq!(created["monthlyQuota"], domain::DEFAULT_MONTHLY_QUOTA);
    assert_eq!(created["timezone"], "UTC");
    assert_eq!(created["alertThresholds"], json!([80]));
    assert!(created.get("monthlyBudget").is_none(), "{created}");
    let empty = app.put("/api/tenants/globex", &json!({})).await;
    assert_eq!(empty.status().as_u16(), 201);
}

#[tokio::test]
async fn each_refused_tenant_field_is_named_and_nothing_is_saved() {
    let app = spawn_app().await;
    app.put_tenant("acme", json!({"monthlyQuota": 1000})).await;
    let before = tenant(&app, "acme").await;
    for (body, field) in [
        (json!({"monthlyQuota": 0}), "monthlyQuota"),
        (json!({"monthlyQuota": "many"}), "monthlyQuota"),
        (json!({"billingDay": 29}), "billingDay"),
        (json!({"billingDay": "first"}), "billingDay"),
        (json!({"timezone": "Mars/Olympus"}), "timezone"),
        (json!({"timezone": 5}), "timezone"),
        (json!({"alertThresholds": [0]}), "alertThresholds"),
        (json!({"alertThresholds": "80"}), "alertThresholds"),
        (json!({"monthlyBudget": "-5"}), "monthlyBudget"),
        (json!({"monthlyBudget": 5}), "monthlyBudget"),
        (json!({"name": "   "}), "name"),
        (json!({"name": 7}), "name"),
        (json!({"timezone": "UTC", "billingDay": 29}), "billingDay"),
    ] {
        let refused = assert_client_error(app.put("/api/tenants/acme", &body).await, 400).await;
        assert_eq!(named_field(&refused), field, "{body} → {refused}");
    }
    assert_eq!(tenant(&app, "acme").await, before);
}

#[tokio::test]
async fn a_slack_webhook_put_answers_201_when_it_creates_and_200_when_it_replaces() {
    let app = spawn_app().await;
    app.put_tenant("acme", json!({"monthlyQuota": 1000})).await;
    let path = "/api/tenants/acme/slack-webhook";

    let created = app
        .put(
            path,
            &json!({"url": "http://127.0.0.1:9/services/T1/B1/first"}),
        )
        .await;
    let replaced = app
        .put(
            path,
            &json!({"url": "http://127.0.0.1:9/services/T1/B1/second", "enabled": false}),
        )
        .await;

    assert_eq!(created.status().as_u16(), 201);
    assert_eq!(replaced.status().as_u16(), 200);
    let created: Value = created.json().await.unwrap();
    let replaced: Value = replaced.json().await.unwrap();
    assert_eq!(created["enabled"], true);
    assert_eq!(replaced["enabled"], false);
    assert_eq!(replaced["createdAt"], created["createdAt"]);
    let (_, hook) = app.get_json(path).await;
    assert_eq!(hook["enabled"], false);
}

#[tokio::test]
async fn a_deleted_tenants_usage_and_alerts_stay_readable_under_its_last_configuration() {
    let app = spawn_app().await;
    app.put_tenant(
        "acme",
        json!({"monthlyQuota": 1000, "timezone": "America/New_York", "alertThresholds": [80]}),
    )
    .await;
    let at = Utc::now() - Span::minutes(5);
    app.env
        .write(&[testing::event("acme", "a1", "gpt-4o", 900, at)], 1)
        .await;
    evaluate(&app.env.db, &["acme".to_owned()], Utc::now())
        .await
        .unwrap();

    assert_eq!(app.delete("/api/tenants/acme").await.status().as_u16(), 204);

    assert_client_error(app.get("/api/tenants/acme").await, 404).await;
    let (status, usage) = app.get_json("/api/usage/acme").await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["totalTokens"], 900);
    assert_eq!(usage["monthlyQuota"], 1000);
    let (status, series) = app
        .get_json("/api/usage/acme/timeseries?granularity=day")
        .await;
    assert_eq!(status, 200, "{series}");
    assert_eq!(series["tz"], "America/New_York");
    let total: i64 = series["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["totalTokens"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 900);
    let (status, alerts) = app.get_json("/api/tenants/acme/alerts").await;
    assert_eq!(status, 200, "{alerts}");
    assert_eq!(alerts[0]["threshold"], 80);
    assert_eq!(alerts[0]["usageTokens"], 900);
    let (_, events) = app.get_json("/api/events?tenant=acme").await;
    assert_eq!(events["events"][0]["id"], "a1");
    let (_, listed) = app.get_json("/api/tenants").await;
    assert_eq!(listed["tenants"], json!([]));
    assert_client_error(app.get("/api/usage/never-seen").await, 404).await;
    assert_client_error(app.get("/api/tenants/never-seen/alerts").await, 404).await;
    assert_client_error(app.delete("/api/tenants/acme").await, 404).await;
}

#[tokio::test]
async fn a_deleted_tenant_created_again_starts_from_the_defaults() {
    let app = spawn_app().await;
    app.put_tenant("acme", json!({"monthlyQuota": 1000, "billingDay": 9}))
        .await;
    assert_eq!(app.delete("/api/tenants/acme").await.status().as_u16(), 204);

    let again = app
        .put("/api/tenants/acme", &json!({"timezone": "Europe/Paris"}))
        .await;

    assert_eq!(again.status().as_u16(), 201);
    let got = tenant(&app, "acme").await;
    assert_eq!(got["monthlyQuota"], domain::DEFAULT_MONTHLY_QUOTA);
    assert_eq!(got["billingDay"], 1);
    let (_, usage) = app.get_json("/api/usage/acme").await;
    assert_eq!(usage["monthlyQuota"], domain::DEFAULT_MONTHLY_QUOTA);
}
