//! The pipeline's defences, in-process against real PostgreSQL and Valkey:
//! entries PostgreSQL refuses, entries that keep crashing workers, safe
//! trimming, dead-letter re-drive, ledger retention, keeping live work fresh,
//! removing the consumers dead replicas left behind.

use std::time::Duration;

use chrono::Utc;
use pipeline::{
    consumer::{Consumer, ReadSettings},
    janitor::{expire_ledger, safe_trim_point, trim_stream},
    stale_consumers,
};
use redis::AsyncCommands;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use store::dead_letter;
use stream::{EventRecord, StreamKeys, ensure_group};
use testkit::{TestEnv, env as testing};
use tokio_util::sync::CancellationToken;

fn event(id: &str, feature: &str, tokens: i64) -> EventRecord {
    testing::event("acme", id, feature, tokens, Utc::now())
}

async fn total(env: &TestEnv) -> i64 {
    total_in(&env.db).await
}

async fn total_in(db: &sea_orm::DatabaseConnection) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT coalesce(sum(total_tokens), 0)::bigint AS t FROM daily_rollups",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "t").unwrap()
}

async fn dead_letters(env: &TestEnv) -> Vec<dead_letter::StoredLetter> {
    dead_letter::list(&env.db, &env.stream, 100, None)
        .await
        .unwrap()
}

/// Runs a replica named `consumer` until the group has nothing left to
/// deliver or pending (within 30 s), then stops it.
async fn drain_with_a_replica(env: &TestEnv, consumer: &str) {
    let replica = env.spawn_pipeline(consumer);
    assert!(env.drained(Duration::from_secs(30)).await);
    replica.stop().await;
}

#[tokio::test]
async fn an_event_postgres_refuses_is_dead_lettered_and_the_rest_counted_then_redriven() {
    let env = TestEnv::new().await;
    env.db
        .execute_unprepared(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN
                 IF NEW.feature = 'refused' THEN RAISE EXCEPTION 'refused by policy'; END IF;
                 RETURN NEW; END $$ LANGUAGE plpgsql;
             CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .await
        .unwrap();
    env.append(&[
        event("a", "gpt-4o", 10),
        event("b", "refused", 1000),
        event("c", "gpt-4o", 20),
    ])
    .await;

    drain_with_a_replica(&env, "w").await;

    assert_eq!(total(&env).await, 30);
    let letters = dead_letters(&env).await;
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].reason.contains("refused by policy"),
        "{}",
        letters[0].reason
    );

    // The cause fixed, the operator re-drives the letter: it is counted once.
    env.db
        .execute_unprepared("DROP TRIGGER refuse ON events")
        .await
        .unwrap();
    let keys = StreamKeys::new(&env.stream, &env.group);
    let redriven = dead_letter::redrive(&mut env.valkey().await, &env.db, &keys, &letters)
        .await
        .unwrap();
    assert_eq!(redriven, 1);
    drain_with_a_replica(&env, "w2").await;
    assert_eq!(total(&env).await, 1030);
    assert!(dead_letters(&env).await.is_empty());
}

#[tokio::test]
async fn an_entry_delivered_too_often_is_dead_lettered_with_its_count() {
    let env = TestEnv::new().await;
    let ids = env
        .append(&[event("killer", "gpt-4o", 5), event("fine", "gpt-4o", 7)])
        .await;
    // Six replicas took the first entry and died with it.
    env.read_as("dead-0", 1).await;
    let mut conn = env.valkey().await;
    for n in 1..6 {
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(&env.stream)
            .arg(&env.group)
            .arg(format!("dead-{n}"))
            .arg(0)
            .arg(&ids[0])
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    drain_with_a_replica(&env, "survivor").await;

    assert_eq!(total(&env).await, 7);
    let letters = dead_letters(&env).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].original_id, ids[0]);
    assert_eq!(letters[0].deliveries, 7);
    assert!(letters[0].reason.contains("delivered 7 times"));
    assert!(letters[0].payload.is_some());
}

#[tokio::test]
async fn trimming_keeps_every_entry_pending_or_not_yet_delivered() {
    let env = TestEnv::new().await;
    let keys = StreamKeys::new(&env.stream, &env.group);
    let records: Vec<_> = (0..10)
        .map(|i| event(&i.to_string(), "gpt-4o", 1))
        .collect();
    let ids = env.append(&records).await;
    let mut conn = env.valkey().await;
    assert_eq!(
        safe_trim_point(&mut conn, &keys).await.unwrap(),
        None,
        "nothing delivered yet"
    );

    // Six delivered; the first three and the fifth acknowledged.
    env.read_as("c", 6).await;
    let _: u64 = conn
        .xack(
            &env.stream,
            &env.group,
            &[&ids[0], &ids[1], &ids[2], &ids[4]],
        )
        .await
        .unwrap();
    let trimmed = trim_stream(&mut conn, &keys).await.unwrap();

    assert_eq!(trimmed, 3, "only the acknowledged prefix goes");
    let left: redis::streams::StreamRangeReply = conn.xrange_all(&env.stream).await.unwrap();
    let left: Vec<String> = left.ids.into_iter().map(|e| e.id).collect();
    assert_eq!(left, ids[3..].to_vec());

    // Everything delivered and acknowledged: all of it may go.
    env.read_as("c", 10).await;
    let _: u64 = conn.xack(&env.stream, &env.group, &ids[3..]).await.unwrap();
    trim_stream(&mut conn, &keys).await.unwrap();
    let len: u64 = conn.xlen(&env.stream).await.unwrap();
    assert_eq!(len, 0);
}

#[tokio::test]
async fn a_second_group_that_is_behind_holds_the_trim_back() {
    let env = TestEnv::new().await;
    let keys = StreamKeys::new(&env.stream, &env.group);
    let ids = env.append(&[event("a", "x", 1), event("b", "x", 1)]).await;
    let mut conn = env.valkey().await;
    let _: () = conn.xgroup_create(&env.stream, "audit", "0").await.unwrap();
    env.read_as("c", 10).await;
    let _: u64 = conn.xack(&env.stream, &env.group, &ids).await.unwrap();

    assert_eq!(trim_stream(&mut conn, &keys).await.unwrap(), 0);
}

#[tokio::test]
async fn ledger_rows_past_retention_are_deleted_and_rollups_stay() {
    let env = TestEnv::new().await;
    env.write(
        &[event("old", "gpt-4o", 5), event("new", "gpt-4o", 6)],
        1_000,
    )
    .await;
    env.db
        .execute_unprepared(
            "UPDATE events SET received_at = now() - interval '40 days' WHERE id = 'old'",
        )
        .await
        .unwrap();

    let deleted = expire_ledger(&env.db, 35, &CancellationToken::new())
        .await
        .unwrap();

    assert_eq!(deleted, 1);
    let left = env
        .db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT id FROM events",
        ))
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].try_get::<String>("", "id").unwrap(), "new");
    assert_eq!(total(&env).await, 11);
}

#[tokio::test]
async fn a_slow_worker_keeps_its_entries_from_being_taken_over() {
    let env = TestEnv::new().await;
    env.append(&[event("a", "x", 1)]).await;
    let settings = ReadSettings {
        batch_size: 10,
        block: Duration::from_millis(100),
        claim_idle: Duration::from_millis(600),
    };
    let client = redis::Client::open(testing::valkey_url()).unwrap();
    let keys = StreamKeys::new(&env.stream, &env.group);
    let slow = Consumer::connect(&client, keys.clone(), "slow".into(), settings.clone())
        .await
        .unwrap();
    let other = Consumer::connect(&client, keys, "other".into(), settings)
        .await
        .unwrap();
    let batch = slow.read().await.unwrap();
    let ids: Vec<String> = batch.iter().map(|d| d.id.clone()).collect();

    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(350)).await;
        slow.touch(&ids).await.unwrap();
    }
    let (stolen, _) = other.reclaim("0-0").await.unwrap();

    assert!(stolen.is_empty(), "live work was taken over");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (taken, _) = other.reclaim("0-0").await.unwrap();
    assert_eq!(
        taken.len(),
        1,
        "once the slow worker stops touching, its entries are taken over"
    );
}

#[tokio::test]
async fn a_read_only_postgres_delays_counting_but_dead_letters_nothing() {
    let env = TestEnv::new().await;
    let (server, database) = env.database_url.rsplit_once('/').unwrap();
    let database = database.to_owned();
    let set_read_only = |on: bool| {
        format!(
            "ALTER DATABASE \"{database}\" SET default_transaction_read_only = {on};
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = '{database}' AND pid <> pg_backend_pid();"
        )
    };
    let admin = sea_orm::Database::connect(format!("{server}/postgres"))
        .await
        .unwrap();
    let worker = env.spawn_pipeline("w");
    env.append(&[event("first", "gpt-4o", 5)]).await;
    assert!(
        env.drained(Duration::from_secs(30)).await,
        "the worker runs"
    );
    // Like a primary demoted to a read-only replica: sessions may read,
    // every write is refused (SQLSTATE 25006).
    admin
        .execute_unprepared(&set_read_only(true))
        .await
        .unwrap();
    env.append(&[event("a", "gpt-4o", 10), event("b", "gpt-4o", 20)])
        .await;
    // Long enough for several failed commits (the split used to begin after
    // three, and dead-lettered every event).
    tokio::time::sleep(Duration::from_secs(3)).await;
    admin
        .execute_unprepared(&set_read_only(false))
        .await
        .unwrap();

    assert!(
        env.drained(Duration::from_secs(30)).await,
        "counting resumed"
    );
    worker.stop().await;
    let db = sea_orm::Database::connect(&env.database_url).await.unwrap();
    assert_eq!(total_in(&db).await, 35);
    assert!(
        dead_letter::list(&db, &env.stream, 10, None)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn dead_letters_an_earlier_version_kept_in_valkey_are_moved_and_redriven() {
    let env = TestEnv::new().await;
    let keys = StreamKeys::new(&env.stream, &env.group);
    let mut conn = env.valkey().await;
    ensure_group(&mut conn, &keys).await.unwrap();
    let payload = event("old", "gpt-4o", 42).encode();
    let _: String = conn
        .xadd(
            &keys.dead,
            "*",
            &[
                ("original_id", &b"1-0"[..]),
                ("reason", &b"refused"[..]),
                ("consumer", &b"old-replica"[..]),
                ("deliveries", &b"3"[..]),
                ("payload", &payload[..]),
            ],
        )
        .await
        .unwrap();

    // Twice, as after a crash between the insert and the XDEL.
    assert_eq!(
        dead_letter::import_legacy(&mut conn, &env.db, &keys)
            .await
            .unwrap(),
        1
    );
    let _: String = conn
        .xadd(
            &keys.dead,
            "*",
            &[("original_id", "1-0"), ("reason", "refused")],
        )
        .await
        .unwrap();
    dead_letter::import_legacy(&mut conn, &env.db, &keys)
        .await
        .unwrap();
    let letters = dead_letters(&env).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].original_id, "1-0");
    assert_eq!(letters[0].deliveries, 3);
    assert_eq!(letters[0].kind, "imported");
    let left: u64 = conn.xlen(&keys.dead).await.unwrap();
    assert_eq!(left, 0);

    dead_letter::redrive(&mut conn, &env.db, &keys, &letters)
        .await
        .unwrap();
    let worker = env.spawn_pipeline("w");
    assert!(env.drained(Duration::from_secs(30)).await);
    worker.stop().await;
    assert_eq!(total(&env).await, 42);
    assert!(dead_letters(&env).await.is_empty());
}

#[tokio::test]
async fn a_dead_letter_written_twice_is_stored_once() {
    let env = TestEnv::new().await;
    let letter = dead_letter::DeadLetter {
        stream: &env.stream,
        original_id: "5-0",
        kind: "undecodable",
        reason: "not MessagePack",
        consumer: "w",
        deliveries: 1,
        payload: Some(b"\xc1"),
    };
    letter.write(&env.db).await.unwrap();
    letter.write(&env.db).await.unwrap();

    let letters = dead_letters(&env).await;
    assert_eq!(letters.len(), 1);
    let after = dead_letter::list(&env.db, &env.stream, 10, Some(letters[0].id))
        .await
        .unwrap();
    assert!(after.is_empty(), "the cursor pages past it");
}

/// The group's consumers and how many entries each has pending, by name.
async fn consumers(env: &TestEnv) -> Vec<(String, usize)> {
    let reply: redis::streams::StreamInfoConsumersReply = env
        .valkey()
        .await
        .xinfo_consumers(&env.stream, &env.group)
        .await
        .unwrap();
    let mut consumers: Vec<(String, usize)> = reply
        .consumers
        .into_iter()
        .map(|c| (c.name, c.pending))
        .collect();
    consumers.sort();
    consumers
}

/// Adds an empty consumer `name` to the test's group, as a replica that
/// started and died before reading anything leaves.
async fn create_consumer(env: &TestEnv, name: &str) {
    let _: bool = redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(&env.stream)
        .arg(&env.group)
        .arg(name)
        .query_async(&mut env.valkey().await)
        .await
        .unwrap();
}

#[tokio::test]
async fn idle_consumers_that_own_nothing_are_removed_and_one_that_owns_entries_never_is() {
    let env = TestEnv::new().await;
    let ids = env
        .append(
            &(0..5)
                .map(|i| event(&i.to_string(), "x", 1))
                .collect::<Vec<_>>(),
        )
        .await;
    let owned = env.read_as("crashed-owning-3", 3).await;
    env.read_as("crashed-after-acking", 2).await;
    let _: u64 = env
        .valkey()
        .await
        .xack(&env.stream, &env.group, &ids[3..])
        .await
        .unwrap();
    create_consumer(&env, "crashed-empty").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    create_consumer(&env, "just-started").await;

    let keys = StreamKeys::new(&env.stream, &env.group);
    let mut removed =
        stale_consumers::remove(&mut env.valkey().await, &keys, Duration::from_millis(300))
            .await
            .unwrap();
    removed.sort();

    assert_eq!(removed, ["crashed-after-acking", "crashed-empty"]);
    assert_eq!(
        consumers(&env).await,
        [
            ("crashed-owning-3".to_owned(), 3),
            ("just-started".to_owned(), 0)
        ]
    );
    assert_eq!(owned, ids[..3]);
}

#[tokio::test]
async fn a_replicas_janitor_removes_a_dead_replicas_consumer_once_it_is_stale() {
    let env = TestEnv::new().await;
    env.append(&[event("a", "x", 1)]).await;
    create_consumer(&env, "dead-replica").await;
    let mut config = env.pipeline_config("live");
    config.worker.stale_consumer_secs = 1;
    let replica = testing::Replica::start(config);

    testkit::eventually(
        "the dead replica's consumer is removed",
        Duration::from_secs(30),
        || async {
            let names: Vec<String> = consumers(&env).await.into_iter().map(|c| c.0).collect();
            if names.contains(&"dead-replica".to_owned()) {
                Err(names)
            } else {
                Ok(())
            }
        },
    )
    .await;
    // The live replica's consumer, idle as long on a quiet stream, may go
    // too: its next read that returns entries brings it back.
    env.append(&[event("b", "x", 1)]).await;
    assert!(env.drained(Duration::from_secs(20)).await);
    replica.stop().await;

    assert_eq!(total(&env).await, 2);
}
