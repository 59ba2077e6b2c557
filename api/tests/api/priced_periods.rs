//! Issues 15 and 17 together: cost over a time-zone period (whole UTC days
//! from daily rollups, partial days from minute rollups), a void taking its
//! event's classes and cost away, the explorer's classes, and a budget
//! alert delivered to a signed webhook as `kind: budget`; the check counts
//! the same period.

use std::time::Duration;

use chrono::{Datelike, Utc};
use chrono_tz::Asia::Kolkata;
use serde_json::{Value, json};
use testkit::{TestApp, eventually, fake_slack::FakeSlack, spawn_app};

use crate::support::signed_webhook;

async fn usage_when(app: &TestApp, done: impl Fn(&Value) -> bool) -> Value {
    eventually("the usage settled", Duration::from_secs(20), || async {
        let (status, body) = app.get_json("/api/usage/acme").await;
        if status == 200 && done(&body) {
            Ok(body)
        } else {
            Err(body)
        }
    })
    .await
}

async fn classed(app: &TestApp, id: &str, at: chrono::DateTime<Utc>, input: i64, output: i64) {
    app.post_event(
        &json!({"tenant": "acme", "id": id, "feature": "gpt-4o", "inputTokens": input,
                "outputTokens": output, "timestamp": at.to_rfc3339()}),
    )
    .await;
}

#[tokio::test]
async fn a_kolkata_period_costs_exactly_its_own_events_and_a_void_takes_its_cost_away() {
    let app = spawn_app().await;
    let _worker = app.env.spawn_pipeline("worker");
    let day = (Utc::now().with_timezone(&Kolkata) - chrono::Duration::days(3))
        .day()
        .min(28);
    app.put_tenant(
        "acme",
        json!({"monthlyQuota": 100_000_000, "billingDay": day, "timezone": "Asia/Kolkata"}),
    )
    .await;
    let (_, usage) = app.get_json("/api/usage/acme").await;
    let start: chrono::DateTime<Utc> = usage["periodStart"].as_str().unwrap().parse().unwrap();
    assert_eq!(start.format("%M").to_string(), "30", "18:30Z: {start}");
    app.set_price("gpt-4o", "1.00", "2.00", start - chrono::Duration::days(2))
        .await;
    let minute = chrono::Duration::minutes(1);

    // Before the period (the same UTC day as its start): not counted.
    classed(&app, "before", start - minute, 1_000_000, 0).await;
    // The partial UTC day at the start (minute rollups): 1.00.
    classed(&app, "first", start + minute, 1_000_000, 0).await;
    // A whole UTC day inside the period (daily rollups): 1.00.
    classed(&app, "whole", start + chrono::Duration::days(2), 0, 500_000).await;
    // Today, then voided: 1.00 while it counts.
    classed(&app, "voided", Utc::now() - minute, 1_000_000, 0).await;
    let counted = usage_when(&app, |u| u["totalTokens"] == 2_500_000).await;
    assert_eq!(counted["cost"], "3.000000", "{counted}");
    let void = app
        .post(
            "/api/events/void",
            &json!({"tenant": "acme", "id": "voided"}),
        )
        .await;
    assert_eq!(void.status().as_u16(), 202);

    let usage = usage_when(&app, |u| u["totalTokens"] == 1_500_000).await;
    assert_eq!(usage["cost"], "2.000000", "{usage}");
    let feature = &usage["byFeature"][0];
    assert_eq!(
        (
            &feature["inputTokens"],
            &feature["outputTokens"],
            &feature["cost"]
        ),
        (&json!(1_000_000), &json!(500_000), &json!("2.000000")),
        "{usage}"
    );
    let (_, series) = app
        .get_json(&format!(
            "/api/usage/acme/timeseries?granularity=day&tz=Asia/Kolkata&from={}",
            start.to_rfc3339().replace('+', "%2B")
        ))
        .await;
    let points = series["points"].as_array().unwrap();
    assert_eq!(
        (&points[0]["totalTokens"], &points[0]["cost"]),
        (&json!(1_000_000), &json!("1.000000")),
        "the first local day: {series}"
    );
    let costs: Vec<&str> = points.iter().map(|p| p["cost"].as_str().unwrap()).collect();
    assert_eq!(
        costs.iter().filter(|c| **c != "0.000000").count(),
        2,
        "{costs:?}"
    );
    let (_, listed) = app.get_json("/api/events?tenant=acme").await;
    let by_id = |id: &str| {
        listed["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id("whole")["outputTokens"], 500_000);
    assert_eq!(by_id("whole")["inputTokens"], 0);
    assert_eq!(by_id("voided")["voided"], true);
    assert_eq!(by_id("voided")["inputTokens"], 1_000_000);
    eventually(
        "the check counts the same local period",
        Duration::from_secs(10),
        || async {
            let (_, check) = app.get_json("/api/usage/acme/check?tokens=1").await;
            if check["remainingTokens"] == 98_500_000 {
                Ok(())
            } else {
                Err(check)
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_budget_alert_reaches_the_signed_webhook_as_kind_budget_once() {
    let app = spawn_app().await;
    let receiver = FakeSlack::start(&[]).await;
    app.set_standing_price("gpt-4o", "1.00", "1.00").await;
    app.put_tenant(
        "acme",
        json!({"monthlyQuota": 100_000_000, "monthlyBudget": "1.00", "alertThresholds": [80],
                "timezone": "America/New_York"}),
    )
    .await;
    signed_webhook(&app, "acme", &receiver.webhook_url).await;
    let worker = app.env.spawn_pipeline("w");

    classed(
        &app,
        "a",
        Utc::now() - chrono::Duration::minutes(1),
        900_000,
        0,
    )
    .await;
    receiver.wait_for_requests(1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.stop().await;

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "one message per threshold and kind");
    let body = requests[0].json();
    assert_eq!(body["kind"], "budget", "{body}");
    assert_eq!(body["threshold"], 80);
    assert_eq!(
        (&body["cost"], &body["budget"], &body["currency"]),
        (&json!("0.900000"), &json!("1.000000"), &json!("USD")),
        "what crossed what: {body}"
    );
    let (_, usage) = app.get_json("/api/usage/acme").await;
    let instant = |v: &Value| {
        v.as_str()
            .unwrap()
            .parse::<chrono::DateTime<Utc>>()
            .unwrap()
    };
    assert_eq!(
        instant(&body["periodStart"]),
        instant(&usage["periodStart"]),
        "the New York period: {usage}"
    );
    let (_, alerts) = app.get_json("/api/tenants/acme/alerts").await;
    assert_eq!(alerts.as_array().unwrap().len(), 1, "{alerts}");
    assert_eq!(alerts[0]["kind"], "budget");
    assert_eq!(alerts[0]["webhook"]["status"], "delivered");
    assert_eq!(
        (&alerts[0]["cost"], &alerts[0]["currency"]),
        (&body["cost"], &body["currency"])
    );
}
