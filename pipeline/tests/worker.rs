//! The pipeline against real PostgreSQL and Valkey: exactly-once counting,
//! dead letters, several replicas, reclaiming a dead replica's entries,
//! partial rollup rows per connection.

use std::time::Duration;

use chrono::Utc;
use entity::{daily_rollups, events, rollups, tenants};
use pipeline::writer::{Written, write_batch};
use redis::AsyncCommands;
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait};
use stream::EventRecord;
use testkit::{TestEnv, env as testing};

fn event(tenant: &str, id: &str, feature: &str, tokens: i64) -> EventRecord {
    testing::event(tenant, id, feature, tokens, Utc::now())
}

/// Events of tenant `acme` on `gpt-4o`, `tokens` each, with the ids `e{i}`
/// for `i` in `ids`.
fn acme_events(ids: std::ops::Range<usize>, tokens: i64) -> Vec<EventRecord> {
    ids.map(|i| event("acme", &format!("e{i}"), "gpt-4o", tokens))
        .collect()
}

/// Runs one worker, `consumer`, until the stream is drained, then stops it.
async fn drain_with_one_worker(env: &TestEnv, consumer: &str) {
    let worker = env.spawn_pipeline(consumer);
    assert!(
        env.drained(Duration::from_secs(20)).await,
        "the stream drains"
    );
    worker.stop().await;
}

/// What a write that fired no alert reports.
fn wrote(counted: u64, duplicates: u64) -> Written {
    Written {
        counted,
        duplicates,
        voided: 0,
    }
}

async fn counted_tokens(env: &TestEnv, tenant: &str) -> (i64, i64) {
    let sum = |table: &str| {
        format!(
            "SELECT coalesce(sum(total_tokens), 0)::bigint AS t FROM {table} WHERE tenant = '{tenant}'"
        )
    };
    let mut out = [0i64; 2];
    for (slot, table) in out.iter_mut().zip(["rollups", "daily_rollups"]) {
        let row = env
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                sum(table),
            ))
            .await
            .unwrap()
            .unwrap();
        *slot = row.try_get("", "t").unwrap();
    }
    (out[0], out[1])
}

/// Each case writes its batches in turn, on a database of its own, and
/// checks what each write reported, the tokens counted per tenant and the
/// events the ledger holds.
#[tokio::test]
async fn an_event_id_seen_again_is_counted_once() {
    let batch = vec![
        event("acme", "e1", "gpt-4o", 100),
        event("acme", "e2", "gpt-4o", 200),
        event("globex", "e1", "claude-3-opus", 50),
    ];
    let repeated_inside = vec![
        event("acme", "same", "gpt-4o", 100),
        event("acme", "same", "gpt-4o", 999),
        event("acme", "other", "gpt-4o", 1),
    ];
    let cases = [
        (
            "a batch written twice is counted once",
            vec![batch.clone(), batch],
            vec![wrote(3, 0), wrote(0, 3)],
            vec![("acme", 300), ("globex", 50)],
            3,
        ),
        (
            "repeated ids inside one batch count once and the first wins",
            vec![repeated_inside],
            vec![wrote(2, 1)],
            vec![("acme", 101)],
            2,
        ),
    ];

    for (case, batches, reported, counted, stored) in cases {
        let env = TestEnv::new().await;
        let mut written = Vec::new();
        for batch in &batches {
            written.push(env.write(batch, 1_000).await);
        }

        assert_eq!(written, reported, "{case}");
        for (tenant, tokens) in counted {
            assert_eq!(
                counted_tokens(&env, tenant).await,
                (tokens, tokens),
                "{case}: {tenant}"
            );
        }
        let events = events::Entity::find().count(&env.db).await.unwrap();
        assert_eq!(events, stored, "{case}");
    }
}

#[tokio::test]
async fn an_unknown_tenant_is_created_with_the_default_quota() {
    let env = TestEnv::new().await;

    env.write(&[event("newco", "e1", "gpt-4o", 5)], 12_345)
        .await;

    let tenant = tenants::Entity::find_by_id("newco")
        .one(&env.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tenant.monthly_quota, 12_345);
    assert_eq!(tenant.billing_day, 1);
    assert_eq!(tenant.alert_thresholds, vec![80]);
}

#[tokio::test]
async fn rollups_bucket_by_event_minute_and_utc_day() {
    let env = TestEnv::new().await;
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    };
    let mut batch = vec![
        event("acme", "a", "gpt-4o", 1),
        event("acme", "b", "gpt-4o", 2),
        event("acme", "c", "gpt-4o", 4),
    ];
    batch[0].occurred_ms = at("2026-11-21T23:59:10Z");
    batch[1].occurred_ms = at("2026-11-21T23:59:50Z");
    batch[2].occurred_ms = at("2026-11-22T00:00:00Z");

    env.write(&batch, 1_000).await;

    let minutes = rollups::Entity::find().all(&env.db).await.unwrap();
    let mut minutes: Vec<_> = minutes
        .iter()
        .map(|r| (r.minute.to_rfc3339(), r.total_tokens, r.event_count))
        .collect();
    minutes.sort();
    assert_eq!(
        minutes,
        vec![
            ("2026-11-21T23:59:00+00:00".to_owned(), 3, 2),
            ("2026-11-22T00:00:00+00:00".to_owned(), 4, 1),
        ]
    );
    let mut days: Vec<_> = daily_rollups::Entity::find()
        .all(&env.db)
        .await
        .unwrap()
        .iter()
        .map(|d| (d.day.to_string(), d.total_tokens))
        .collect();
    days.sort();
    assert_eq!(
        days,
        vec![("2026-11-21".to_owned(), 3), ("2026-11-22".to_owned(), 4)]
    );
}

#[tokio::test]
async fn concurrent_migrations_on_a_fresh_database_all_succeed() {
    let env = TestEnv::new().await;
    // Back to an empty database, whatever tables later migrations add.
    env.db
        .execute_unprepared("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        .await
        .unwrap();

    let runs = (0..4).map(|_| {
        let url = env.database_url.clone();
        tokio::spawn(async move {
            let db = sea_orm::Database::connect(&url).await.unwrap();
            migration::run(&db).await
        })
    });
    for run in runs {
        run.await.unwrap().unwrap();
    }

    assert_eq!(tenants::Entity::find().count(&env.db).await.unwrap(), 0);
}

#[tokio::test]
async fn a_worker_counts_the_stream_and_dead_letters_what_it_cannot_decode() {
    let env = TestEnv::new().await;
    let records = acme_events(0..50, 10);
    env.append(&records[..25]).await;
    let mut conn = env.valkey().await;
    let _: String = conn
        .xadd(&env.stream, "*", &[("e", &b"\xc1garbage"[..])])
        .await
        .unwrap();
    let _: String = conn
        .xadd(&env.stream, "*", &[("other", "field")])
        .await
        .unwrap();
    env.append(&records[25..]).await;

    drain_with_one_worker(&env, "w1").await;

    assert_eq!(counted_tokens(&env, "acme").await, (500, 500));
    let dead = store::dead_letter::list(&env.db, &env.stream, 10, None)
        .await
        .unwrap();
    assert_eq!(dead.len(), 2);
    let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    assert!(reasons[0].contains("MessagePack"), "{reasons:?}");
    assert!(reasons[1].contains("no field 'e'"), "{reasons:?}");
    assert!(dead.iter().all(|d| d.kind == "undecodable"), "{dead:?}");
    assert_eq!(dead[0].payload.as_deref(), Some(&b"\xc1garbage"[..]));
}

#[tokio::test]
async fn two_workers_on_one_stream_give_exact_totals() {
    let env = TestEnv::new().await;
    let tenants = ["acme-corp", "globex-inc", "initech-llc"];
    let records: Vec<_> = (0..3000)
        .map(|i| {
            event(
                tenants[i % 3],
                &format!("e{i}"),
                "gpt-4-turbo",
                (i % 7 + 1) as i64,
            )
        })
        .collect();
    let a = env.spawn_pipeline("worker-a");
    let b = env.spawn_pipeline("worker-b");

    env.append(&records).await;
    // A client retry: the same events again.
    env.append(&records[..300]).await;

    assert!(
        env.drained(Duration::from_secs(30)).await,
        "the stream drains"
    );
    tokio::join!(a.stop(), b.stop());
    for (t, tenant) in tenants.iter().enumerate() {
        let expected: i64 = records
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 == t)
            .map(|(_, r)| r.tokens)
            .sum();
        assert_eq!(
            counted_tokens(&env, tenant).await,
            (expected, expected),
            "{tenant}"
        );
    }
}

#[tokio::test]
async fn entries_left_pending_by_a_dead_replica_are_taken_over() {
    let env = TestEnv::new().await;
    env.append(&acme_events(0..20, 5)).await;
    // A replica reads the entries and dies before acknowledging them.
    assert_eq!(env.read_as("ghost", 100).await.len(), 20);

    drain_with_one_worker(&env, "survivor").await;

    assert_eq!(counted_tokens(&env, "acme").await, (100, 100));
}

#[tokio::test]
async fn connections_counting_one_tenant_add_into_rows_of_their_own_summed_when_read() {
    let env = TestEnv::new().await;
    let first = sea_orm::Database::connect(&env.database_url).await.unwrap();
    let second = sea_orm::Database::connect(&env.database_url).await.unwrap();

    write_batch(&first, &acme_events(0..10, 3), &testing::new_tenants(1_000))
        .await
        .unwrap();
    write_batch(
        &second,
        &acme_events(10..20, 3),
        &testing::new_tenants(1_000),
    )
    .await
    .unwrap();

    let slots: std::collections::BTreeSet<i16> = daily_rollups::Entity::find()
        .all(&env.db)
        .await
        .unwrap()
        .iter()
        .map(|d| d.slot)
        .collect();
    assert_eq!(slots.len(), 2, "one partial row per connection");
    let usage = store::usage::tenant_usage(&env.db, "acme", Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(usage.total_tokens(), 60);
    assert_eq!(counted_tokens(&env, "acme").await, (60, 60));
}
