//! Voids through real processes: events and voids in both orders, every
//! void sent twice, counted by workers one of which crashes between COMMIT
//! and ack (a failpoint) and one of which is SIGKILLed mid-stream; the
//! totals come out exact.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use testkit::TestEnv;

use crate::{
    services,
    support::{client, expect_status},
};

/// Items for a batch route: the route, the body's list field, the items.
struct Batches {
    path: &'static str,
    key: &'static str,
    items: Vec<Value>,
}

/// Posts `batches`' items to its route, 100 at a time.
async fn post_all(base: &str, batches: Batches) {
    let Batches { path, key, items } = batches;
    let client = client();
    for chunk in items.chunks(100) {
        let request = client.post(format!("{base}{path}"));
        expect_status(request.json(&json!({ key: chunk })), 202).await;
    }
}

/// Events `{prefix}0` to `{prefix}{n - 1}` for acme, event `i` of `tokens(i)`.
fn events(prefix: &str, n: usize, tokens: impl Fn(usize) -> i64) -> Batches {
    let items = (0..n)
        .map(|i| json!({"tenant": "acme", "id": format!("{prefix}{i}"), "feature": "gpt-4o", "tokens": tokens(i)}))
        .collect();
    Batches {
        path: "/api/events/batch",
        key: "events",
        items,
    }
}

/// Voids of acme's events `ids`.
fn voids(ids: impl Iterator<Item = String>) -> Batches {
    Batches {
        path: "/api/events/void/batch",
        key: "voids",
        items: ids.map(|id| json!({"tenant": "acme", "id": id})).collect(),
    }
}

/// The tokens of acme's event `e{i}`.
fn tokens(i: usize) -> i64 {
    (i % 7 + 1) as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voids_in_both_orders_and_twice_leave_exact_totals_through_crashed_workers() {
    let env = TestEnv::new().await;
    let stack = services(&env);
    let (base, _api) = stack.spawn_api().await;
    let voided_after: Vec<String> = (0..600)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("e{i}"))
        .collect();
    let ghosts = || (0..200).map(|i| format!("g{i}"));
    post_all(&base, events("e", 600, tokens)).await;
    for _ in 0..2 {
        post_all(&base, voids(voided_after.iter().cloned())).await;
    }
    post_all(&base, voids(ghosts())).await;
    post_all(&base, events("g", 200, |_| 5)).await;
    post_all(&base, voids(ghosts())).await;
    // A client retrying voided events.
    post_all(&base, events("e", 30, tokens)).await;

    stack.crash_after_commit().await;
    let mut victim = stack.spawn_pipeline("victim", &[]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    victim.kill().await.unwrap();
    let mut survivor = stack.spawn_pipeline("survivor", &[]);
    assert!(
        stack.drained(Duration::from_secs(60)).await,
        "the stream drains"
    );
    survivor.kill().await.unwrap();

    let expected: i64 = (0..600).filter(|i| i % 3 != 0).map(tokens).sum();
    let db = sea_orm::Database::connect(&stack.database_url)
        .await
        .unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT (SELECT coalesce(sum(total_tokens), 0)::bigint FROM rollups WHERE tenant = 'acme') AS minute,
                    (SELECT coalesce(sum(total_tokens), 0)::bigint FROM daily_rollups WHERE tenant = 'acme') AS daily,
                    (SELECT coalesce(sum(event_count), 0)::bigint FROM rollups WHERE tenant = 'acme') AS events,
                    (SELECT coalesce(sum(tokens) FILTER (WHERE voided_at IS NULL), 0)::bigint FROM events WHERE tenant = 'acme') AS live,
                    (SELECT count(*) FROM events WHERE tenant = 'acme' AND voided_at IS NOT NULL AND tokens > 0) AS voided,
                    (SELECT count(*) FROM events WHERE tenant = 'acme' AND tokens = 0) AS tombstones",
        ))
        .await
        .unwrap()
        .unwrap();
    let get = |column: &str| row.try_get::<i64>("", column).unwrap();
    assert_eq!(
        (get("minute"), get("daily"), get("live"), get("events")),
        (expected, expected, expected, 400),
        "(minute rollups, daily rollups, live ledger tokens, events counted)"
    );
    // Which voids find their event counted depends on the order the
    // replicas happen to commit in (entries a crashed replica read ahead
    // are redelivered after those behind them), and either order must give
    // the same totals: each of the 400 voided ids is a voided event or a
    // tombstone, never both, never counted.
    let (voided, tombstones) = (get("voided"), get("tombstones"));
    assert_eq!(
        voided + tombstones,
        400,
        "{voided} voided, {tombstones} tombstones"
    );
}
