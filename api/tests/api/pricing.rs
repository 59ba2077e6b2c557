//! Token classes, effective-dated prices, exact cost, budgets and the
//! entitlement check, through the api with a real pipeline.

use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use serde_json::{Value, json};
use testkit::{
    TestApp, assert_client_error, env::event, eventually, spawn_app, spawn_app_with_usage,
};

/// Polls the tenant's usage until `done` holds for it.
async fn wait_for_usage(app: &TestApp, tenant: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually("the usage settled", Duration::from_secs(20), || async {
        let (status, body) = app.get_json(&format!("/api/usage/{tenant}")).await;
        if status == 200 && done(&body) {
            Ok(body)
        } else {
            Err(body)
        }
    })
    .await
}

fn time(body: &Value, field: &str) -> DateTime<Utc> {
    body[field].as_str().unwrap().parse().unwrap()
}

async fn created(app: &TestApp, path: &str, body: Value) -> Value {
    let response = app.post(path, &body).await;
    assert_eq!(response.status().as_u16(), 201, "{body}");
    response.json().await.unwrap()
}

/// A tenant whose current period began at least three days ago (so that
/// a price version "one day into the period" lies in the past).
async fn tenant_three_days_into_its_period(
    app: &TestApp,
    tenant: &str,
    extra: Value,
) -> DateTime<Utc> {
    let billing_day = (Utc::now() - chrono::Duration::days(3)).day().min(28);
    let mut body = json!({"monthlyQuota": 100_000_000, "billingDay": billing_day});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let saved = app.put(&format!("/api/tenants/{tenant}"), &body).await;
    assert!(saved.status().is_success());
    let (_, usage) = app.get_json(&format!("/api/usage/{tenant}")).await;
    time(&usage, "periodStart")
}

#[tokio::test]
async fn classed_events_under_two_price_versions_cost_exactly_4_70_and_a_back_dated_price_reprices_them()
 {
    let app = spawn_app().await;
    let _worker = app.env.spawn_pipeline("worker");
    let start = tenant_three_days_into_its_period(&app, "acme", json!({})).await;
    let day = chrono::Duration::days(1);
    let v1 = created(
        &app,
        "/api/prices",
        json!({"feature": "gpt-4o", "inputPerMillion": "2.50", "outputPerMillion": "10.00",
               "cacheReadPerMillion": "1.25", "effectiveFrom": (start - day).to_rfc3339()}),
    )
    .await;
    assert_eq!(
        v1["cacheWritePerMillion"], "2.500000",
        "defaults to the input price"
    );
    assert_eq!(v1["currency"], "USD");
    created(
        &app,
        "/api/prices",
        json!({"feature": "gpt-4o", "inputPerMillion": "5.00", "outputPerMillion": "20.00",
               "cacheReadPerMillion": "2.50", "effectiveFrom": (start + day).to_rfc3339()}),
    )
    .await;
    let recent_at = Utc::now() - chrono::Duration::hours(1);
    let recent = recent_at.to_rfc3339();

    // Event 1 (single, under v1): 2.50 + 1.00 + 0.25 = 3.75.
    let one = app
        .post(
            "/api/events",
            &json!({"tenant": "acme", "feature": "gpt-4o", "inputTokens": 1_000_000,
                    "outputTokens": 100_000, "cacheReadTokens": 200_000,
                    "timestamp": (start + chrono::Duration::hours(12)).to_rfc3339()}),
        )
        .await;
    assert_eq!(one.status().as_u16(), 202);
    // Events 2-4 (a batch, under v2): 0.50 + 0.20, then 50,000 unclassified
    // at the input price, then an unpriced feature.
    let batch = app
        .post(
            "/api/events/batch",
            &json!({"events": [
                {"tenant": "acme", "feature": "gpt-4o", "inputTokens": 100_000,
                 "outputTokens": 10_000, "tokens": 110_000, "timestamp": recent},
                {"tenant": "acme", "feature": "gpt-4o", "tokens": 50_000, "timestamp": recent},
                {"tenant": "acme", "feature": "in-house-model", "tokens": 1_234, "timestamp": recent},
            ]}),
        )
        .await;
    assert_eq!(batch.status().as_u16(), 202);

    let usage = wait_for_usage(&app, "acme", |u| u["totalTokens"] == 1_461_234).await;
    assert_eq!(usage["cost"], "4.700000", "{usage}");
    assert_eq!(usage["currency"], "USD");
    assert_eq!(usage["unpricedTokens"], 1_234);
    assert!(usage.get("budget").is_none());
    let features = usage["byFeature"].as_array().unwrap();
    assert_eq!(
        features[0],
        json!({"feature": "gpt-4o", "totalTokens": 1_460_000, "inputTokens": 1_100_000,
               "outputTokens": 110_000, "cacheReadTokens": 200_000, "cacheWriteTokens": 0,
               "cost": "4.700000", "unpricedTokens": 0})
    );
    assert_eq!(features[1]["feature"], "in-house-model");
    assert_eq!(features[1]["cost"], "0.000000");
    assert_eq!(features[1]["unpricedTokens"], 1_234);

    // A back-dated price for the unpriced feature re-prices what was counted.
    app.set_price("in-house-model", "1.00", "1", start - day)
        .await;
    let usage = wait_for_usage(&app, "acme", |u| u["unpricedTokens"] == 0).await;
    assert_eq!(usage["cost"], "4.701234", "{usage}");

    // Per bucket: the period's first day under v1, today's events under v2.
    let (status, series) = app
        .get_json(&format!(
            "/api/usage/acme/timeseries?granularity=day&from={}",
            start.to_rfc3339().replace('+', "%2B")
        ))
        .await;
    assert_eq!(status, 200, "{series}");
    let points = series["points"].as_array().unwrap();
    assert_eq!(points[0]["cost"], "3.750000", "{series}");
    assert_eq!(points[0]["cacheReadTokens"], 200_000);
    let recent_day = recent_at.format("%Y-%m-%dT00:00:00+00:00").to_string();
    let recent_bucket = points
        .iter()
        .find(|p| p["start"] == recent_day.as_str())
        .unwrap();
    assert_eq!(recent_bucket["cost"], "0.951234", "{series}");
    assert_eq!(recent_bucket["unpricedTokens"], 0);

    let (_, listed) = app.get_json("/api/prices?feature=gpt-4o").await;
    let prices = listed["prices"].as_array().unwrap();
    assert_eq!(prices.len(), 2);
    assert_eq!(prices[1]["inputPerMillion"], "5.000000");
    let (_, all) = app.get_json("/api/prices").await;
    assert_eq!(all["prices"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_price_changing_within_a_minute_prices_each_event_by_its_own_time() {
    let app = spawn_app().await;
    let now = Utc::now();
    let minute = (now - chrono::Duration::minutes(3)).timestamp();
    let minute = DateTime::from_timestamp(minute - minute % 60, 0).unwrap();
    let change = minute + chrono::Duration::seconds(30);
    app.set_price("m", "1", "1", now - chrono::Duration::days(30))
        .await;
    app.set_price("m", "3", "3", change).await;
    app.env
        .write(
            &[
                event(
                    "acme",
                    "before",
                    "m",
                    1_000_000,
                    minute + chrono::Duration::seconds(10),
                ),
                event("acme", "after", "m", 1_000_000, change),
                event("acme", "later", "m", 1_000, now),
            ],
            100_000_000,
        )
        .await;

    let usage = wait_for_usage(&app, "acme", |u| u["totalTokens"] == 2_001_000).await;

    assert_eq!(usage["cost"], "4.003000", "{usage}");
}

#[tokio::test]
async fn every_bad_class_price_budget_and_check_is_a_400_naming_it() {
    let app = spawn_app().await;
    let event = |extra: Value| {
        let mut e = json!({"tenant": "acme", "feature": "gpt-4o"});
        e.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        e
    };
    let bad_events = [
        (json!({"inputTokens": -1}), "inputTokens"),
        (json!({"outputTokens": 1_000_000_001u64}), "outputTokens"),
        (json!({"cacheReadTokens": "5"}), "cacheReadTokens"),
        (json!({"cacheWriteTokens": 1.5}), "cacheWriteTokens"),
        (
            json!({"inputTokens": 10, "outputTokens": 5, "tokens": 16}),
            "tokens",
        ),
        (json!({"cacheReadTokens": 0}), "tokens"),
        (json!({}), "tokens"),
        (
            json!({"inputTokens": 1_000_000_000, "outputTokens": 1}),
            "tokens",
        ),
    ];
    for (extra, field) in bad_events {
        let body = event(extra);
        let error = assert_client_error(app.post("/api/events", &body).await, 400).await;
        assert!(error.to_string().contains(field), "{body}: {error}");
        let batch = json!({"events": [event(json!({"tokens": 1})), body]});
        let error = assert_client_error(app.post("/api/events/batch", &batch).await, 400).await;
        assert!(error.to_string().contains(field), "{batch}: {error}");
        assert!(error.to_string().contains("1"), "names the index: {error}");
    }

    let price = |extra: Value| {
        let mut p =
            json!({"feature": "gpt-4o", "inputPerMillion": "2.50", "outputPerMillion": "10"});
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        p
    };
    let bad_prices = [
        (json!({"inputPerMillion": "-2.50"}), "inputPerMillion"),
        (json!({"outputPerMillion": "abc"}), "outputPerMillion"),
        (json!({"outputPerMillion": 10}), "outputPerMillion"),
        (
            json!({"cacheReadPerMillion": "1.2345678"}),
            "cacheReadPerMillion",
        ),
        (
            json!({"cacheWritePerMillion": "1e3"}),
            "cacheWritePerMillion",
        ),
        (json!({"inputPerMillion": "10000000"}), "inputPerMillion"),
        (json!({"feature": "bad feature"}), "feature"),
        (json!({"effectiveFrom": "yesterday"}), "effectiveFrom"),
    ];
    for (extra, field) in bad_prices {
        let body = price(extra);
        let error = assert_client_error(app.post("/api/prices", &body).await, 400).await;
        assert!(error.to_string().contains(field), "{body}: {error}");
    }
    let mut missing = price(json!({}));
    missing.as_object_mut().unwrap().remove("outputPerMillion");
    assert_client_error(app.post("/api/prices", &missing).await, 400).await;
    assert_client_error(app.get("/api/prices?feature=a%20b").await, 400).await;

    for budget in [
        json!("-5"),
        json!("0"),
        json!("0.00"),
        json!("five"),
        json!(5),
    ] {
        let body = json!({"monthlyQuota": 1000, "monthlyBudget": budget});
        let error = assert_client_error(app.put("/api/tenants/acme", &body).await, 400).await;
        assert!(
            error.to_string().contains("monthlyBudget"),
            "{body}: {error}"
        );
    }

    for tokens in ["-1", "1000000001", "abc", "1.5", "99999999999999999999"] {
        let path = format!("/api/usage/acme/check?tokens={tokens}");
        assert_client_error(app.get(&path).await, 400).await;
    }
    assert_client_error(app.get("/api/usage/-acme/check").await, 400).await;
    assert_eq!(app.env.stream_len().await, 0, "nothing was stored");
}

#[tokio::test]
async fn the_check_allows_exactly_up_to_the_quota_and_below_the_budget() {
    let app = spawn_app_with_usage(&[event("acme", "1", "gpt-4o", 900, Utc::now())], 1_000).await;
    let check = |tokens: &str| {
        let app = &app;
        let path = format!("/api/usage/acme/check{tokens}");
        async move { app.get_json(&path).await }
    };

    let (status, edge) = check("?tokens=100").await;
    let (_, over) = check("?tokens=101").await;
    let (_, bare) = check("").await;

    assert_eq!(status, 200);
    assert_eq!(edge["allowed"], true, "{edge}");
    assert_eq!(edge["remainingTokens"], 100);
    assert_eq!(edge["quotaPercent"], 90.0);
    assert_eq!(edge["tenant"], "acme");
    assert!(edge["asOf"].is_string() && edge["lagMs"].is_u64(), "{edge}");
    assert!(edge.get("remainingBudget").is_none());
    assert_eq!(over["allowed"], false, "{over}");
    assert_eq!(bare["allowed"], true);

    // A tenant never seen: the default quota, no usage.
    let (status, new) = app.get_json("/api/usage/nobody/check?tokens=1000000").await;
    assert_eq!(status, 200);
    assert_eq!(new["allowed"], true, "{new}");
    assert_eq!(new["remainingTokens"], 1_000_000);
    let (_, too_much) = app.get_json("/api/usage/nobody/check?tokens=1000001").await;
    assert_eq!(too_much["allowed"], false);

    // With a budget: allowed while the cost is below it.
    app.set_standing_price("gpt-4o", "1000", "1000").await;
    // Sets the budget, then polls `check` until it shows `remaining`.
    let with_budget = async |amount: &str, tokens: &str, remaining: &str| {
        app.put_tenant(
            "acme",
            json!({"monthlyQuota": 1_000, "monthlyBudget": amount}),
        )
        .await;
        let what = format!("a budget of {amount} leaves {remaining}");
        eventually(&what, Duration::from_secs(5), || async {
            let (_, body) = check(tokens).await;
            if body["remainingBudget"] == remaining {
                Ok(body)
            } else {
                Err(body)
            }
        })
        .await
    };
    let below = with_budget("1.00", "?tokens=1", "0.100000").await;
    assert_eq!(below["allowed"], true);
    let spent = with_budget("0.90", "", "0.000000").await;
    assert_eq!(spent["allowed"], false, "cost must stay below the budget");
}

#[tokio::test]
async fn a_tenant_key_checks_only_its_own_tenant() {
    let app = spawn_app().await;
    let key = app.tenant_reader("acme").await;
    let status = async |tenant: &str| {
        let path = format!("/api/usage/{tenant}/check");
        key.get(&path).await.status().as_u16()
    };
    assert_eq!(status("acme").await, 200);
    assert_eq!(status("globex").await, 403);
}

#[tokio::test]
async fn a_budget_of_5_with_an_80_percent_threshold_fires_exactly_one_budget_alert() {
    let app = spawn_app().await;
    let now = Utc::now();
    app.set_standing_price("gpt-4o", "2.50", "10.00").await;
    let saved = app
        .put(
            "/api/tenants/acme",
            &json!({"monthlyQuota": 100_000_000, "monthlyBudget": "5.00", "alertThresholds": [80]}),
        )
        .await;
    assert_eq!(saved.status().as_u16(), 201);
    let saved: Value = saved.json().await.unwrap();
    assert_eq!(saved["monthlyBudget"], "5.000000");
    let alerts = || async { app.get_json("/api/tenants/acme/alerts").await.1 };

    // 3.75: 75 % of the budget, below the threshold.
    app.env
        .write(&[event("acme", "1", "gpt-4o", 1_500_000, now)], 1)
        .await;
    assert_eq!(alerts().await, json!([]));
    // 4.70 (94 %), then more, by two replicas' worth of batches.
    app.env
        .write(&[event("acme", "2", "gpt-4o", 380_000, now)], 1)
        .await;
    app.env
        .write(
            &[
                event("acme", "3", "gpt-4o", 100_000, now),
                event("acme", "2", "gpt-4o", 380_000, now),
            ],
            1,
        )
        .await;

    let fired = alerts().await;
    let fired = fired.as_array().unwrap();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["kind"], "budget");
    assert_eq!(fired[0]["threshold"], 80);
    assert_eq!(fired[0]["cost"], "4.700000");
    assert_eq!(fired[0]["budget"], "5.000000");
    assert_eq!(fired[0]["status"], "no_webhook");
    let (_, usage) = app.get_json("/api/usage/acme").await;
    assert_eq!(usage["budget"], "5.000000");
    assert_eq!(usage["budgetPercent"], 99.0, "{usage}");

    // Raising the budget above the cost re-arms the alert.
    let raise = json!({"monthlyQuota": 100_000_000, "monthlyBudget": "100"});
    assert!(
        app.put("/api/tenants/acme", &raise)
            .await
            .status()
            .is_success()
    );
    assert_eq!(alerts().await, json!([]));
}
