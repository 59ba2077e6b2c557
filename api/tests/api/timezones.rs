//! Billing periods and time series in a tenant's time zone, against real
//! rollups: New York (a DST change week), Kolkata (+05:30), billing day 28
//! in February; events a minute either side of local midnight.

use std::time::Duration;

use alerts::rules::evaluate;
use chrono::{DateTime, Duration as Span, NaiveTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};
use testkit::{TestApp, assert_client_error, env as testing, json, spawn_app};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn instant(value: &Value) -> DateTime<Utc> {
    at(value.as_str().unwrap())
}

/// Creates `tenant` in `zone`, billed on `day`.
async fn tenant(app: &TestApp, tenant: &str, zone: &str, day: i16, thresholds: &[i32]) {
    let saved = app
        .put(
            &format!("/api/tenants/{tenant}"),
            &json!({"monthlyQuota": 1000, "billingDay": day, "timezone": zone,
                    "alertThresholds": thresholds}),
        )
        .await;
    assert_eq!(saved.status().as_u16(), 201);
}

/// The current period's start is local midnight on the billing day, and an
/// event a minute before it counts in the previous period, one at it in
/// this one.
async fn the_period_starts_at_local_midnight(zone: Tz, day: i16) {
    let app = spawn_app().await;
    tenant(&app, "acme", zone.name(), day, &[50]).await;
    let (_, usage) = app.get_json("/api/usage/acme").await;
    let start = instant(&usage["periodStart"]);
    let local = start.with_timezone(&zone);
    assert_eq!(local.time(), NaiveTime::MIN, "{zone}: {start}");
    assert_eq!(chrono::Datelike::day(&local), day as u32);
    assert!(instant(&usage["periodEnd"]) > Utc::now());

    let events = [
        testing::event("acme", "before", "gpt-4o", 400, start - Span::minutes(1)),
        testing::event("acme", "at", "gpt-4o", 500, start),
        testing::event("acme", "later", "gpt-4o", 7, start + Span::hours(30)),
    ];
    app.env.write(&events, 1000).await;

    app.wait_for_total("acme", 507, Duration::from_secs(5))
        .await;
    let (_, alerts) = app.get_json("/api/tenants/acme/alerts").await;
    assert_eq!(alerts[0]["usageTokens"], 507, "{alerts}");
    assert_eq!(instant(&alerts[0]["periodStart"]), start);
}

#[tokio::test]
async fn a_new_york_period_starts_at_local_midnight_and_a_minute_before_is_not_in_it() {
    the_period_starts_at_local_midnight(chrono_tz::America::New_York, 1).await;
}

#[tokio::test]
async fn a_kolkata_period_starts_at_local_midnight_half_an_hour_off_utc_hours() {
    the_period_starts_at_local_midnight(chrono_tz::Asia::Kolkata, 15).await;
}

#[tokio::test]
async fn billing_day_28_in_february_in_new_york_counts_from_local_midnight() {
    let app = spawn_app().await;
    tenant(&app, "acme", "America/New_York", 28, &[50]).await;
    // 2027-02-28 00:00 in New York (EST) is 05:00Z; the period ends on
    // 2027-03-28 00:00 EDT, 04:00Z.
    let events = [
        testing::event("acme", "feb-27", "gpt-4o", 400, at("2027-02-28T04:59:00Z")),
        testing::event("acme", "feb-28", "gpt-4o", 300, at("2027-02-28T05:00:00Z")),
        testing::event("acme", "mar-27", "gpt-4o", 250, at("2027-03-28T03:59:00Z")),
        testing::event("acme", "mar-28", "gpt-4o", 900, at("2027-03-28T04:00:00Z")),
    ];
    app.env.write(&events, 1000).await;

    let fired = evaluate(
        &app.env.db,
        &["acme".to_owned()],
        at("2027-03-10T12:00:00Z"),
    )
    .await
    .unwrap();

    assert_eq!(fired, 1);
    let (_, alerts) = app.get_json("/api/tenants/acme/alerts").await;
    let alert = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["periodStart"].as_str().unwrap().starts_with("2027-02"))
        .unwrap();
    assert_eq!(instant(&alert["periodStart"]), at("2027-02-28T05:00:00Z"));
    assert_eq!(instant(&alert["periodEnd"]), at("2027-03-28T04:00:00Z"));
    assert_eq!(alert["usageTokens"], 550, "300 + 250: the two inside");
}

#[tokio::test]
async fn a_day_series_in_new_york_follows_local_days_through_the_dst_change() {
    let app = spawn_app().await;
    tenant(&app, "acme", "America/New_York", 1, &[80]).await;
    // The week of 2026-11-01, when New York falls back from EDT to EST at
    // 02:00 local. Two events a local day: 00:01 and 23:59 local.
    let days = [
        ("2026-10-29", -4),
        ("2026-10-30", -4),
        ("2026-10-31", -4),
        ("2026-11-01", -4),
        ("2026-11-02", -5),
        ("2026-11-03", -5),
        ("2026-11-04", -5),
    ];
    let midnight = |day: &str, offset: i64| at(&format!("{day}T00:00:00Z")) - Span::hours(offset);
    let mut events = Vec::new();
    for (n, (day, offset)) in days.iter().enumerate() {
        let start = midnight(day, *offset);
        let next = days
            .get(n + 1)
            .map_or(midnight("2026-11-05", -5), |(d, o)| midnight(d, *o));
        let tokens = 10 * (n as i64 + 1);
        events.push(testing::event(
            "acme",
            &format!("{day}-a"),
            "gpt-4o",
            tokens,
            start + Span::minutes(1),
        ));
        events.push(testing::event(
            "acme",
            &format!("{day}-b"),
            "gpt-4o",
            tokens,
            next - Span::minutes(1),
        ));
    }
    app.env.write(&events, 1_000_000).await;

    let (status, series) = app
        .get_json("/api/usage/acme/timeseries?granularity=day&from=2026-10-29T12:00:00Z&to=2026-11-04T12:00:00Z&tz=America/New_York")
        .await;
    let (_, hours) = app
        .get_json("/api/usage/acme/timeseries?granularity=hour&from=2026-11-01T04:00:00Z&to=2026-11-02T05:00:00Z")
        .await;
    let (_, utc_days) = app
        .get_json("/api/usage/acme/timeseries?granularity=day&from=2026-10-29T00:00:00Z&to=2026-11-06T00:00:00Z&tz=UTC")
        .await;

    assert_eq!(status, 200, "{series}");
    assert_eq!(series["tz"], "America/New_York");
    let points: Vec<(DateTime<Utc>, i64)> = series["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (instant(&p["start"]), p["totalTokens"].as_i64().unwrap()))
        .collect();
    let expected: Vec<(DateTime<Utc>, i64)> = days
        .iter()
        .enumerate()
        .map(|(n, (day, offset))| (midnight(day, *offset), 20 * (n as i64 + 1)))
        .collect();
    assert_eq!(
        points, expected,
        "each local day holds exactly its two events"
    );
    assert_eq!(
        hours["tz"], "America/New_York",
        "the tenant's zone by default"
    );
    let hour_points = hours["points"].as_array().unwrap();
    assert_eq!(hour_points.len(), 25, "the day of the change has 25 hours");
    assert_eq!(json::sum(&hours["points"], "totalTokens"), 80);
    assert_eq!(
        json::sum(&utc_days["points"], "totalTokens"),
        2 * (10 + 20 + 30 + 40 + 50 + 60 + 70),
        "same events, UTC days"
    );
}

#[tokio::test]
async fn unknown_time_zones_are_400s_naming_the_field() {
    let app = spawn_app().await;
    for zone in ["Mars/Olympus_Mons", "EST5EDT6", "", "America/New York"] {
        let body = assert_client_error(
            app.put(
                "/api/tenants/acme",
                &json!({"monthlyQuota": 10, "timezone": zone}),
            )
            .await,
            400,
        )
        .await;
        assert!(body.to_string().contains("timezone"), "{zone}: {body}");
    }
    tenant(&app, "acme", "Asia/Kolkata", 1, &[80]).await;
    let (_, saved) = app.get_json("/api/tenants/acme").await;
    assert_eq!(saved["timezone"], "Asia/Kolkata");
    app.put_tenant("acme", json!({"monthlyQuota": 20})).await;
    let (_, kept) = app.get_json("/api/tenants/acme").await;
    assert_eq!(
        kept["timezone"], "Asia/Kolkata",
        "absent on update: unchanged"
    );
    let body = assert_client_error(
        app.get("/api/usage/acme/timeseries?granularity=day&tz=Nowhere/Else")
            .await,
        400,
    )
    .await;
    assert_eq!(body["details"]["field"], "tz", "{body}");
}
