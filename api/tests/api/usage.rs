use chrono::{Duration, Utc};
use serde_json::Value;
use testkit::env::event;

use testkit::{assert_client_error, json, spawn_app, spawn_app_with_usage};

#[tokio::test]
async fn a_tenant_never_seen_is_404_and_a_malformed_one_400() {
    let app = spawn_app().await;
    let body = assert_client_error(app.get("/api/usage/nobody").await, 404).await;
    assert_eq!(
        body["details"],
        serde_json::json!({"field": "tenant", "reason": "names no tenant: nobody"})
    );
    assert_client_error(app.get("/api/usage/-bad").await, 400).await;
    assert_client_error(app.get("/api/usage/nobody/timeseries").await, 404).await;
}

#[tokio::test]
async fn usage_sums_the_current_period_by_feature() {
    let now = Utc::now();
    let app = spawn_app_with_usage(
        &[
            event("acme", "1", "gpt-4o", 600, now),
            event("acme", "2", "gpt-4o", 400, now - Duration::minutes(3)),
            event("acme", "3", "claude-3-opus", 250, now),
            // Before the period: not counted in it.
            event("acme", "4", "gpt-4o", 99_999, now - Duration::days(40)),
        ],
        10_000,
    )
    .await;

    let (status, body) = app.get_json("/api/usage/acme").await;

    assert_eq!(status, 200);
    let current_month_start = now.format("%Y-%m-01T00:00:00+00:00").to_string();
    assert_eq!(body["periodStart"], current_month_start, "{body}");
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["tenantName"], "acme");
    assert_eq!(body["monthlyQuota"], 10_000);
    assert_eq!(body["totalTokens"], 1250);
    assert_eq!(body["quotaPercent"], 12.5);
    assert_eq!(
        json::by_feature(&body),
        [("gpt-4o", 1000), ("claude-3-opus", 250)]
    );
    assert!(
        body["asOf"].is_string() && body["lastCountedAt"].is_string(),
        "{body}"
    );
    assert!(body["periodEnd"].as_str().unwrap() > body["periodStart"].as_str().unwrap());
}

#[tokio::test]
async fn all_usage_lists_every_tenant_and_pages() {
    let now = Utc::now();
    let records: Vec<_> = ["b-tenant", "a-tenant", "c-tenant"]
        .iter()
        .map(|t| event(t, "1", "gpt-4o", 10, now))
        .collect();
    let app = spawn_app_with_usage(&records, 1_000).await;

    let (status, body) = app.get_json("/api/usage").await;
    let (_, page) = app.get_json("/api/usage?limit=1&offset=1").await;

    assert_eq!(status, 200);
    assert_eq!(
        json::texts(&body["tenants"], "tenant"),
        ["a-tenant", "b-tenant", "c-tenant"]
    );
    assert_eq!(body["tenants"][0]["quotaPercent"], 1.0);
    assert_eq!(page["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(page["tenants"][0]["tenant"], "b-tenant");
    assert_client_error(app.get("/api/usage?limit=0").await, 400).await;
}

#[tokio::test]
async fn a_time_series_has_every_bucket_and_filters_by_feature() {
    let app = spawn_app().await;
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let now = Utc::now();
    let base = if base > now - Duration::days(30) {
        base
    } else {
        now - Duration::days(2)
    };
    let base = base - Duration::seconds(base.timestamp() % 3600);
    app.env
        .write(
            &[
                event("acme", "1", "gpt-4o", 5, base + Duration::seconds(10)),
                event("acme", "2", "gpt-4o", 7, base + Duration::seconds(50)),
                event("acme", "3", "claude", 11, base + Duration::minutes(2)),
            ],
            1_000,
        )
        .await;
    let from = base.to_rfc3339().replace('+', "%2B");
    let to = (base + Duration::minutes(3))
        .to_rfc3339()
        .replace('+', "%2B");

    let app = &app;
    let series = |query: &str| {
        let path = format!("/api/usage/acme/timeseries?{query}&from={from}&to={to}");
        async move { app.get_json(&path).await }
    };
    let (status, minutes) = series("granularity=minute").await;
    let (_, gpt) = series("granularity=minute&feature=gpt-4o").await;
    let (_, hours) = series("granularity=hour").await;
    let (_, days) = series("granularity=day").await;

    assert_eq!(status, 200, "{minutes}");
    let tokens = |v: &Value| json::ints(&v["points"], "totalTokens");
    assert_eq!(tokens(&minutes), [12, 0, 11]);
    assert_eq!(minutes["points"][0]["eventCount"], 2);
    assert_eq!(tokens(&gpt), [12, 0, 0]);
    assert_eq!(tokens(&hours), [23]);
    assert_eq!(tokens(&days), [23]);
    assert_eq!(days["granularity"], "day");
}

#[tokio::test]
async fn a_bad_time_series_request_is_a_400() {
    let app = spawn_app_with_usage(&[event("acme", "1", "gpt-4o", 5, Utc::now())], 1_000).await;
    for query in [
        "granularity=week",
        "from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z",
        "granularity=minute&from=2026-01-01T00:00:00Z&to=2026-11-01T00:00:00Z",
        "from=yesterday",
        "feature=has%20space",
    ] {
        let response = app
            .get(&format!("/api/usage/acme/timeseries?{query}"))
            .await;
        assert_client_error(response, 400).await;
    }
    let (status, body) = app.get_json("/api/usage/acme/timeseries").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["points"].as_array().unwrap().len(),
        60,
        "the last hour, up to and including the current minute"
    );
    assert_eq!(json::sum(&body["points"], "totalTokens"), 5);
}
