//! Reservations, per-minute limits and the check's limits, against real
//! Valkey and PostgreSQL, with real pipeline replicas where counting is
//! the point (issue 28). The bound through two api processes and a
//! cluster is in the fault suite (`system-tests`, `limits`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use testkit::{TestApp, assert_client_error, eventually, spawn_app, spawn_app_with};

/// `POST /api/reservations` to the api at `base`.
async fn reserve_at(app: &TestApp, base: &str, body: Value) -> (u16, Value, Option<u64>) {
    testkit::reservations::reserve(&app.client, base, &body).await
}

async fn reserve(app: &TestApp, body: Value) -> (u16, Value, Option<u64>) {
    reserve_at(app, &app.base, body).await
}

/// A granted reservation's id.
async fn granted(app: &TestApp, body: Value) -> String {
    let (status, answer, _) = reserve(app, body).await;
    assert_eq!(status, 201, "{answer}");
    answer["reservationId"].as_str().unwrap().to_owned()
}

/// The entry of `kind` in an answer's `limits`.
fn limit<'a>(answer: &'a Value, kind: &str) -> &'a Value {
    answer["limits"]
        .as_array()
        .and_then(|limits| limits.iter().find(|l| l["kind"] == kind))
        .unwrap_or_else(|| panic!("no {kind} limit in {answer}"))
}

/// The check of `tenant` for a call of `tokens`.
async fn check(app: &TestApp, tenant: &str, tokens: i64) -> Value {
    let (status, body) = app
        .get_json(&format!("/api/usage/{tenant}/check?tokens={tokens}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Quota used + reserved, as the check sees it.
async fn held(app: &TestApp, tenant: &str) -> i64 {
    let body = check(app, tenant, 0).await;
    let quota = limit(&body, "quota");
    quota["used"].as_i64().unwrap() + quota["reserved"].as_i64().unwrap()
}

fn event(tenant: &str, id: &str, tokens: i64, reservation: Option<&str>) -> Value {
    json!({"tenant": tenant, "feature": "gpt-4o", "tokens": tokens, "id": id,
           "reservationId": reservation})
}

#[tokio::test]
async fn a_reservation_holds_room_until_it_is_released_or_settled() {
    let app = spawn_app().await;
    app.put_tenant("acme", json!({"monthlyQuota": 10_000}))
        .await;

    let (status, first, _) = reserve(&app, json!({"tenant": "acme", "tokens": 6_000})).await;
    assert_eq!(status, 201, "{first}");
    let first_id = first["reservationId"].as_str().unwrap().to_owned();
    assert!(first_id.starts_with("acme:"), "{first}");
    assert_eq!(first["allowed"], true);
    let expires: DateTime<Utc> = first["expiresAt"].as_str().unwrap().parse().unwrap();
    assert!(
        expires > Utc::now() + chrono::Duration::seconds(50),
        "60 s by default"
    );
    let quota = limit(&first, "quota");
    assert_eq!(
        (
            &quota["limit"],
            &quota["used"],
            &quota["reserved"],
            &quota["remaining"]
        ),
        (&json!(10_000), &json!(0), &json!(6_000), &json!(4_000))
    );
    assert!(first["asOf"].is_string());

    let (status, refused, retry_after) =
        reserve(&app, json!({"tenant": "acme", "tokens": 5_000})).await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(refused["allowed"], false);
    assert_eq!(refused["blockedBy"], "quota");
    assert_eq!(limit(&refused, "quota")["remaining"], 4_000);
    let reset: DateTime<Utc> = limit(&refused, "quota")["resetAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let until_reset = (reset - Utc::now()).num_seconds();
    let retry_after = retry_after.expect("Retry-After") as i64;
    assert!(
        (until_reset - 5..=until_reset + 5).contains(&retry_after),
        "the quota has room again when the period ends: {retry_after} vs {until_reset}"
    );

    for _ in 0..2 {
        let released = app.delete(&format!("/api/reservations/{first_id}")).await;
        assert_eq!(released.status().as_u16(), 204, "idempotent");
    }
    let second = granted(&app, json!({"tenant": "acme", "tokens": 5_000})).await;
    app.post_event(&event("acme", "call-1", 4_000, Some(&second)))
        .await;

    let body = check(&app, "acme", 0).await;
    let quota = limit(&body, "quota");
    assert_eq!(
        (&quota["used"], &quota["reserved"]),
        (&json!(4_000), &json!(0))
    );
    assert_eq!(body["remainingTokens"], 6_000, "{body}");
    assert_eq!(body["quotaPercent"], 40.0);
}

#[tokio::test]
async fn the_same_id_gets_the_same_reservation_back() {
    let app = spawn_app().await;
    app.put_tenant("acme", json!({"monthlyQuota": 1_000})).await;
    let body = json!({"tenant": "acme", "tokens": 600, "id": "call 7"});

    let (s1, a, _) = reserve(&app, body.clone()).await;
    let (s2, b, _) = reserve(&app, body.clone()).await;

    assert_eq!((s1, s2), (201, 201));
    assert_eq!(a["reservationId"], "acme:call 7");
    assert_eq!(a["reservationId"], b["reservationId"]);
    assert_eq!(a["expiresAt"], b["expiresAt"]);
    assert_eq!(limit(&b, "quota")["reserved"], 600, "held once");
    // Settled, the retry still gets it back, and holds nothing again.
    app.post_event(&event("acme", "e-7", 500, Some("acme:call 7")))
        .await;
    let (s3, c, _) = reserve(&app, body).await;
    assert_eq!(s3, 201);
    assert_eq!(c["reservationId"], "acme:call 7");
    assert_eq!(held(&app, "acme").await, 500);
}

#[tokio::test]
async fn two_hundred_reservations_at_once_through_two_apis_get_exactly_one_hundred() {
    let app = spawn_app().await;
    let other = app.spawn_replica().await;
    app.put_tenant("acme", json!({"monthlyQuota": 100_000}))
        .await;

    let tries = (0..200).map(|i| {
        let base = if i % 2 == 0 { &app.base } else { &other };
        let app = &app;
        async move { reserve_at(app, base, json!({"tenant": "acme", "tokens": 1_000})).await }
    });
    let answers = futures::future::join_all(tries).await;

    let granted: Vec<&Value> = answers
        .iter()
        .filter(|(s, ..)| *s == 201)
        .map(|(_, a, _)| a)
        .collect();
    assert_eq!(granted.len(), 100);
    assert!(
        answers
            .iter()
            .filter(|(s, ..)| *s != 201)
            .all(|(s, a, _)| *s == 429 && a["blockedBy"] == "quota")
    );
    // Ten settled 250 above their size: usage ends above the quota by
    // exactly their excess.
    let pipeline = app.env.spawn_pipeline("w1");
    let mut expected = 0;
    for (i, answer) in granted.iter().enumerate() {
        let tokens = if i % 10 == 0 { 1_250 } else { 1_000 };
        expected += tokens;
        let id = answer["reservationId"].as_str().unwrap();
        let body = event("acme", &format!("call-{i}"), tokens, Some(id));
        let base = if i % 2 == 0 { &app.base } else { &other };
        let response = app
            .client
            .post(format!("{base}/api/events"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
    }
    assert_eq!(expected - 100_000, 10 * 250);
    app.wait_for_total("acme", expected, Duration::from_secs(30))
        .await;
    assert_eq!(held(&app, "acme").await, expected);
    let (status, refused, _) = reserve(&app, json!({"tenant": "acme", "tokens": 1})).await;
    assert_eq!((status, &refused["blockedBy"]), (429, &json!("quota")));
    pipeline.stop().await;
}

#[tokio::test]
async fn per_minute_limits_count_requests_and_tokens_over_sixty_seconds() {
    let app = spawn_app().await;
    app.put_tenant(
        "acme",
        json!({"monthlyQuota": 1_000_000, "tokensPerMinute": 10_000, "requestsPerMinute": 3}),
    )
    .await;

    let first = granted(&app, json!({"tenant": "acme", "tokens": 6_000})).await;
    let (status, over_tokens, retry_after) =
        reserve(&app, json!({"tenant": "acme", "tokens": 5_000})).await;
    assert_eq!(status, 429);
    assert_eq!(over_tokens["blockedBy"], "tokensPerMinute");
    let retry_after = retry_after.unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let tpm = limit(&over_tokens, "tokensPerMinute");
    assert_eq!(
        (
            &tpm["limit"],
            &tpm["used"],
            &tpm["reserved"],
            &tpm["remaining"]
        ),
        (&json!(10_000), &json!(0), &json!(6_000), &json!(4_000))
    );
    // Settled at 2,000: the window holds the call's real tokens.
    app.post_event(&event("acme", "e1", 2_000, Some(&first)))
        .await;
    granted(&app, json!({"tenant": "acme", "tokens": 5_000})).await;
    // An event without a reservation is a request of the window too.
    app.post_event(&event("acme", "e2", 1, None)).await;
    let (status, over_requests, _) = reserve(&app, json!({"tenant": "acme", "tokens": 1})).await;
    assert_eq!(status, 429);
    assert_eq!(over_requests["blockedBy"], "requestsPerMinute");
    let rpm = limit(&over_requests, "requestsPerMinute");
    assert_eq!(
        (&rpm["used"], &rpm["reserved"], &rpm["remaining"]),
        (&json!(2), &json!(1), &json!(0))
    );
    // The check answers them too.
    let body = check(&app, "acme", 1).await;
    assert_eq!(body["allowed"], false);
    assert_eq!(body["blockedBy"], "requestsPerMinute");
    assert_eq!(limit(&body, "tokensPerMinute")["used"], 2_001);

    // `null` removes a limit.
    app.put_tenant(
        "acme",
        json!({"monthlyQuota": 1_000_000, "requestsPerMinute": null}),
    )
    .await;
    let (_, tenant) = app.get_json("/api/tenants/acme").await;
    assert_eq!(tenant["tokensPerMinute"], 10_000, "kept when absent");
    assert!(tenant.get("requestsPerMinute").is_none(), "{tenant}");
    eventually("the limit is gone", Duration::from_secs(5), || async {
        let (status, answer, _) = reserve(&app, json!({"tenant": "acme", "tokens": 1})).await;
        if status == 201 { Ok(()) } else { Err(answer) }
    })
    .await;
}

#[tokio::test]
async fn the_check_counts_events_not_yet_counted_and_live_reservations() {
    let app = spawn_app().await;
    app.put_tenant("acme", json!({"monthlyQuota": 10_000}))
        .await;
    // No pipeline runs: the events stay accepted, not counted.
    app.post_event(&event("acme", "e1", 3_000, None)).await;
    granted(&app, json!({"tenant": "acme", "tokens": 2_000})).await;

    let body = check(&app, "acme", 5_000).await;
    let over = check(&app, "acme", 5_001).await;

    assert_eq!(body["allowed"], true, "{body}");
    assert_eq!(body["remainingTokens"], 5_000);
    assert_eq!(body["quotaPercent"], 30.0);
    assert_eq!(over["allowed"], false);
    assert_eq!(over["blockedBy"], "quota");
    let (_, usage) = app.get_json("/api/usage/acme").await;
    assert_eq!(usage["totalTokens"], 0, "nothing is counted yet");
}

/// The pipeline commits, sweeps and refreshes run as often as they can,
/// and after every step the check shows exactly what is held: an event
/// is never held twice (in flight and counted) nor missed.
#[tokio::test]
async fn counting_racing_settlement_never_holds_an_event_twice_or_not_at_all() {
    let app = spawn_app_with(|config| config.usage_cache_ms = 0).await;
    app.put_tenant("acme", json!({"monthlyQuota": 1_000_000}))
        .await;
    let pipeline = app.env.spawn_pipeline("w1");

    let mut settled = 0;
    for i in 0..25 {
        let id = granted(&app, json!({"tenant": "acme", "tokens": 1_000})).await;
        assert_eq!(held(&app, "acme").await, settled + 1_000);
        app.post_event(&event("acme", &format!("e{i}"), 700, Some(&id)))
            .await;
        settled += 700;
        for _ in 0..8 {
            assert_eq!(held(&app, "acme").await, settled, "after event {i}");
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
    app.wait_for_total("acme", settled, Duration::from_secs(20))
        .await;
    eventually("everything is counted", Duration::from_secs(10), || async {
        let body = check(&app, "acme", 0).await;
        let quota = limit(&body, "quota").clone();
        if quota["used"] == settled && quota["reserved"] == 0 {
            Ok(())
        } else {
            Err(quota)
        }
    })
    .await;
    pipeline.stop().await;
}

#[tokio::test]
async fn an_event_counted_again_changes_nothing() {
    let app = spawn_app().await;
    app.put_tenant("acme", json!({"monthlyQuota": 100_000}))
        .await;
    let pipeline = app.env.spawn_pipeline("w1");
    let id = granted(&app, json!({"tenant": "acme", "tokens": 1_000})).await;
    app.post_event(&event("acme", "e1", 900, Some(&id))).await;
    app.wait_for_total("acme", 900, Duration::from_secs(20))
        .await;

    // The same event delivered again, as after a crash between COMMIT and
    // XACK, or a dead letter re-driven.
    let again = testkit::env::event("acme", "e1", "gpt-4o", 900, Utc::now());
    app.env.append(&[again]).await;
    assert!(app.env.drained(Duration::from_secs(20)).await);

    for _ in 0..10 {
        assert_eq!(held(&app, "acme").await, 900);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pipeline.stop().await;
}

/// Reservations of one second, settled around the moment they expire:
/// each is settled or expired, never both, and its call counts once in
/// the quota and in the window.
#[tokio::test]
async fn settlement_racing_expiry_counts_each_call_once() {
    let app = spawn_app().await;
    app.put_tenant(
        "acme",
        json!({"monthlyQuota": 1_000_000, "tokensPerMinute": 1_000_000, "requestsPerMinute": 1_000}),
    )
    .await;
    let calls = 6;
    let waits = (0..calls).map(|i| Duration::from_millis(940 + 25 * i));
    let tries = waits.enumerate().map(|(i, wait)| {
        let app = &app;
        async move {
            let id = granted(
                app,
                json!({"tenant": "acme", "tokens": 1_000, "ttlSeconds": 1}),
            )
            .await;
            tokio::time::sleep(wait).await;
            app.post_event(&event("acme", &format!("e{i}"), 600, Some(&id)))
                .await;
        }
    });
    futures::future::join_all(tries).await;
    // Every reservation has expired by now, settled or not.
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let body = check(&app, "acme", 0).await;
    let quota = limit(&body, "quota");
    assert_eq!(
        (&quota["used"], &quota["reserved"]),
        (&json!(3_600), &json!(0))
    );
    let requests = limit(&body, "requestsPerMinute");
    assert_eq!(requests["used"], 6, "each call once: {body}");
    assert_eq!(limit(&body, "tokensPerMinute")["used"], 3_600);
}

#[tokio::test]
async fn an_unknown_or_foreign_reservation_settles_nothing_and_the_event_still_counts() {
    let app = spawn_app().await;
    app.put_tenant("acme", json!({"monthlyQuota": 100_000}))
        .await;
    app.put_tenant("globex", json!({"monthlyQuota": 100_000}))
        .await;
    let theirs = granted(&app, json!({"tenant": "globex", "tokens": 5_000})).await;
    let pipeline = app.env.spawn_pipeline("w1");

    app.post_event(&event("acme", "e1", 100, Some("acme:never-granted")))
        .await;
    app.post_event(&event("acme", "e2", 200, Some(&theirs)))
        .await;

    app.wait_for_total("acme", 300, Duration::from_secs(20))
        .await;
    assert_eq!(held(&app, "globex").await, 5_000, "globex's stays held");
    pipeline.stop().await;
}

#[tokio::test]
async fn a_batch_settles_the_reservations_its_events_name() {
    let app = spawn_app().await;
    app.put_tenant("acme", json!({"monthlyQuota": 100_000}))
        .await;
    let a = granted(&app, json!({"tenant": "acme", "tokens": 1_000})).await;
    let b = granted(&app, json!({"tenant": "acme", "tokens": 1_000})).await;

    let batch =
        json!({"events": [event("acme", "e1", 10, Some(&a)), event("acme", "e2", 20, None)]});
    assert_eq!(app.post("/api/events/batch", &batch).await.status(), 202);
    let single = rmp_serde::to_vec_named(&event("acme", "e3", 30, Some(&b))).unwrap();
    let response = app
        .post_as("/api/events", "application/msgpack", single)
        .await;
    assert_eq!(response.status(), 202);

    let body = check(&app, "acme", 0).await;
    let quota = limit(&body, "quota");
    assert_eq!(
        (&quota["used"], &quota["reserved"]),
        (&json!(60), &json!(0))
    );
}

#[tokio::test]
async fn every_bad_reservation_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({"tenant": "acme", "tokens": 0}), "tokens"),
        (json!({"tenant": "acme", "tokens": 1_000_000_001}), "tokens"),
        (json!({"tenant": "acme", "tokens": "5"}), "tokens"),
        (json!({"tenant": "-acme", "tokens": 5}), "tenant"),
        (
            json!({"tenant": "acme", "tokens": 5, "ttlSeconds": 901}),
            "ttlSeconds",
        ),
        (
            json!({"tenant": "acme", "tokens": 5, "ttlSeconds": 0}),
            "ttlSeconds",
        ),
        (json!({"tenant": "acme", "tokens": 5, "id": ""}), "id"),
        (
            json!({"tenant": "acme", "tokens": 5, "inputTokens": 4}),
            "tokens",
        ),
        (
            json!({"tenant": "acme", "tokens": 5, "feature": "a b"}),
            "feature",
        ),
    ];
    for (body, field) in cases {
        let refused = assert_client_error(app.post("/api/reservations", &body).await, 400).await;
        assert!(refused.to_string().contains(field), "{body}: {refused}");
    }
    let long = "x".repeat(201);
    let body = json!({"tenant": "acme", "feature": "f", "tokens": 1, "reservationId": long});
    assert_client_error(app.post("/api/events", &body).await, 400).await;
    for id in ["nocolon", "-acme:x", "acme:"] {
        let path = format!("/api/reservations/{id}");
        let response = app.delete(&path).await;
        assert_eq!(response.status().as_u16(), 400, "{id}");
    }
    assert_eq!(app.env.stream_len().await, 0, "nothing was stored");
}

#[tokio::test]
async fn a_key_reserves_and_releases_only_for_its_own_tenant() {
    let app = spawn_app().await;
    let key = testkit::create_key(
        &app,
        json!({"name": "acme ingest", "scopes": ["ingest"], "tenant": "acme"}),
    )
    .await;
    let reserve_as = async |tenant: &str| {
        key.client
            .post(format!("{}/api/reservations", app.base))
            .json(&json!({"tenant": tenant, "tokens": 5}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(reserve_as("acme").await, 201);
    assert_eq!(reserve_as("globex").await, 403);
    let theirs = granted(&app, json!({"tenant": "globex", "tokens": 5})).await;
    let released = key
        .client
        .delete(format!("{}/api/reservations/{theirs}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(released.status().as_u16(), 403);
}

#[tokio::test]
async fn without_valkey_a_reservation_and_a_check_are_503_with_retry_after() {
    let app =
        spawn_app_with(|config| config.valkey.valkey_url = "redis://127.0.0.1:1".into()).await;
    let (status, _, retry_after) = reserve(&app, json!({"tenant": "acme", "tokens": 5})).await;
    assert_eq!((status, retry_after), (503, Some(1)));
    let response = app.get("/api/usage/acme/check").await;
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
}
