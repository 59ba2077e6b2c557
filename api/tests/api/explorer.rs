//! The event explorer (`GET /api/events`) over a real ledger, its index
//! scan, and the dead letters over HTTP.

use std::time::Duration;

use chrono::{DateTime, Duration as Span, Utc};
use redis::AsyncCommands;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use store::dead_letter::DeadLetter;
use store::ledger::{EventQuery, LIST_EVENTS};
use testkit::{assert_client_error, env as testing, eventually, json, spawn_app};

#[tokio::test]
async fn the_explorer_pages_a_tenants_events_newest_first_and_filters_them() {
    let app = spawn_app().await;
    let start = Utc::now() - Span::hours(1);
    let at = |i: i64| start + Span::minutes(i);
    let mut events: Vec<_> = (0..25)
        .map(|i| {
            let feature = if i % 5 == 0 {
                "claude-3-opus"
            } else {
                "gpt-4o"
            };
            testing::event("acme", &format!("e{i:02}"), feature, 10 + i, at(i))
        })
        .collect();
    // Two events in one millisecond: the id breaks the tie.
    events.push(testing::event("acme", "tie-b", "gpt-4o", 1, at(30)));
    events.push(testing::event("acme", "tie-a", "gpt-4o", 1, at(30)));
    events.push(testing::event("globex", "g1", "gpt-4o", 5, at(3)));
    app.env.write(&events, 1_000_000).await;

    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/events?tenant=acme&limit=10&cursor={c}"),
            None => "/api/events?tenant=acme&limit=10".to_owned(),
        };
        let (status, page) = app.get_json(&path).await;
        assert_eq!(status, 200, "{page}");
        ids.extend(
            json::texts(&page["events"], "id")
                .into_iter()
                .map(str::to_owned),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let (_, first) = app.get_json("/api/events?tenant=acme&limit=1").await;
    let from = at(10).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let to = at(20).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (_, window) = app
        .get_json(&format!(
            "/api/events?tenant=acme&feature=claude-3-opus&from={from}&to={to}"
        ))
        .await;

    let mut expected: Vec<String> = (0..25).rev().map(|i| format!("e{i:02}")).collect();
    expected.insert(0, "tie-a".into());
    expected.insert(0, "tie-b".into());
    assert_eq!(
        ids, expected,
        "every event once, newest first, across pages"
    );
    let e = &first["events"][0];
    assert_eq!(
        (e["id"].as_str(), e["tokens"].as_i64()),
        (Some("tie-b"), Some(1))
    );
    assert_eq!(e["feature"], "gpt-4o");
    assert!(e["occurredAt"].is_string() && e["receivedAt"].is_string());
    assert_eq!(json::texts(&window["events"], "id"), ["e15", "e10"]);
    assert!(window.get("nextCursor").is_none());
}

#[tokio::test]
async fn a_tenant_key_sees_only_its_tenant_and_a_bad_cursor_is_a_400() {
    let app = spawn_app().await;
    let acme = app.tenant_reader("acme").await;

    assert_eq!(acme.get("/api/events?tenant=acme").await.status(), 200);
    assert_client_error(acme.get("/api/events?tenant=globex").await, 403).await;
    let body = assert_client_error(
        app.get("/api/events?tenant=acme&cursor=nonsense").await,
        400,
    )
    .await;
    assert_eq!(body["details"]["field"], "cursor", "{body}");
    assert_client_error(app.get("/api/events").await, 400).await;
    assert_client_error(app.get("/api/events?tenant=-bad").await, 400).await;
    assert_client_error(app.get("/api/events?tenant=acme&limit=0").await, 400).await;
}

#[tokio::test]
async fn a_page_of_a_large_ledger_is_an_index_range_scan() {
    let app = spawn_app().await;
    // 200,000 ledger rows over 200 tenants, analysed, as a stand-in for
    // millions.
    app.env
        .db
        .execute_unprepared(
            "INSERT INTO events (tenant, id, feature, tokens, occurred_at, received_at)
             SELECT 'tenant-' || (i % 200), 'e' || i, 'gpt-4o', 1,
                    now() - i * interval '1 second', now()
             FROM generate_series(1, 200000) AS i;
             ANALYZE events",
        )
        .await
        .unwrap();
    let page = |after: Option<(DateTime<Utc>, &str)>| EventQuery {
        tenant: "tenant-7".into(),
        from: None,
        to: None,
        feature: None,
        limit: 101,
        after: after.map(|(occurred_at, id)| store::ledger::After {
            occurred_at,
            id: id.into(),
        }),
    };

    for query in [
        page(None),
        page(Some((Utc::now() - Span::hours(10), "e36007"))),
    ] {
        let plan = app
            .env
            .db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!("EXPLAIN {LIST_EVENTS}"),
                query.values(),
            ))
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get_by_index::<String>(0).unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            plan.contains("Index Scan Backward using events_tenant_occurred_idx"),
            "{plan}"
        );
        assert!(
            !plan.contains("Seq Scan") && !plan.contains("Sort"),
            "{plan}"
        );
    }
}

#[tokio::test]
async fn an_undecodable_entry_shows_as_a_dead_letter_and_a_fixed_one_is_redriven() {
    let app = spawn_app().await;
    let mut valkey = app.env.valkey().await;
    let worker = app.env.spawn_pipeline("w");
    let _: String = valkey
        .xadd(&app.env.stream, "*", &[("e", &b"\xc1garbage"[..])])
        .await
        .unwrap();

    let letters = eventually("the dead letter shows", Duration::from_secs(20), || async {
        let (status, letters) = app.get_json("/api/dead-letters").await;
        match letters.as_array() {
            Some(list) if status == 200 && !list.is_empty() => Ok(list.clone()),
            _ => Err((status, letters)),
        }
    })
    .await;
    let letter = &letters[0];
    assert_eq!(letter["kind"], "undecodable");
    assert!(
        letter["reason"].as_str().unwrap().contains("MessagePack"),
        "{letter}"
    );
    assert!(letter["streamId"].as_str().unwrap().contains('-'));
    assert_eq!(letter["attempts"], 1);
    assert_eq!(letter["hasPayload"], true);
    assert!(letter["createdAt"].is_string());

    // An event PostgreSQL refused once, its cause since fixed.
    let refused = testing::event("acme", "r1", "gpt-4o", 70, Utc::now()).encode();
    DeadLetter {
        stream: &app.env.stream,
        original_id: "1-1",
        kind: "refused",
        reason: "a trigger said no",
        consumer: "w",
        deliveries: 1,
        payload: Some(&refused),
    }
    .write(&app.env.db)
    .await
    .unwrap();
    let (_, both) = app.get_json("/api/dead-letters").await;
    let refused_id = both[1]["id"].as_i64().unwrap();
    let (_, after) = app
        .get_json(&format!("/api/dead-letters?after={}", letter["id"]))
        .await;
    let redriven: Value = app
        .post("/api/dead-letters/redrive", &json!({ "ids": [refused_id] }))
        .await
        .json()
        .await
        .unwrap();
    app.wait_for_total("acme", 70, Duration::from_secs(20))
        .await;
    worker.stop().await;

    assert_eq!(after.as_array().unwrap().len(), 1);
    assert_eq!(redriven, json!({"redriven": 1, "dropped": 0}));
    let (_, left) = app.get_json("/api/dead-letters").await;
    assert_eq!(
        left.as_array().unwrap().len(),
        1,
        "the undecodable one stays"
    );
    let body = assert_client_error(
        app.post("/api/dead-letters/redrive", &json!({"limit": 0}))
            .await,
        400,
    )
    .await;
    assert!(body["error"].is_string());
}
