//! Counting restarts by itself after the failures that used to stop it for
//! good: a Valkey at `maxmemory` with a poison entry in the stream, a worker
//! frozen inside its PostgreSQL transaction, and settings that can never
//! work (refused at start-up instead).

use std::{process::Stdio, time::Duration};

use redis::AsyncCommands;
use sea_orm::ConnectionTrait;
use testkit::TestEnv;
use tokio::process::Command;

use crate::support::{Books, Loader, PrivateValkey, Services, bin, client, signal};

/// A field of `INFO`, as text.
async fn info_field(
    conn: &mut redis::aio::MultiplexedConnection,
    section: &str,
    field: &str,
) -> Option<String> {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_while_valkey_is_full_with_a_poison_entry_counts_everything_and_ingest_recovers()
 {
    let env = TestEnv::new().await;
    let valkey = PrivateValkey::start("everysec").await;
    let stack = Services {
        valkey_url: valkey.url(),
        ..crate::services(&env)
    };
    let (base, _api) = stack.spawn_api().await;
    let mut conn = stack.valkey().await;
    // The api created the group; an entry no worker can decode waits in it.
    let _: String = conn
        .xadd(&stack.stream, "*", &[("e", &b"\xc1poison"[..])])
        .await
        .unwrap();
    let books = Books::default();
    let loader = Loader::start(&base, client(), "full", 50, &books);
    loop {
        let len: u64 = conn.xlen(&stack.stream).await.unwrap();
        if len >= 2_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Valkey is full: every write that adds is refused with OOM.
    let used = info_field(&mut conn, "memory", "used_memory")
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used)
        .query_async(&mut conn)
        .await
        .unwrap();
    while info_field(&mut conn, "errorstats", "errorstat_OOM")
        .await
        .is_none()
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The loader now retries its refused batch until it is accepted (the
    // worker cannot have made room before the loader is told to stop).
    let mut worker = stack.spawn_pipeline("full-0", &[]);
    let report = tokio::time::timeout(Duration::from_secs(60), loader.stop())
        .await
        .expect("ingest answers 202 again by itself");

    assert!(
        report.refused > 0,
        "ingest was refused while Valkey was full"
    );
    assert!(
        worker.try_wait().unwrap().is_none(),
        "the worker started and keeps running"
    );
    crate::audit(&stack, &books).await;
    let letters = store::dead_letter::list(&env.db, &stack.stream, 10, None)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].payload.as_deref(), Some(&b"\xc1poison"[..]));
    worker.kill().await.unwrap();
}

/// Whether the worker named `name` has a transaction that wrote something
/// open in PostgreSQL.
async fn in_transaction(db: &sea_orm::DatabaseConnection, name: &str) -> bool {
    let rows = db
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pid FROM pg_stat_activity
             WHERE application_name = $1 AND backend_xid IS NOT NULL",
            [name.into()],
        ))
        .await
        .unwrap();
    !rows.is_empty()
}

/// Ledger rows counted so far.
async fn ledger_rows(stack: &Services) -> i64 {
    stack.counted().await.values().map(|c| c.2).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_frozen_inside_its_transaction_stops_the_others_only_briefly() {
    let env = TestEnv::new().await;
    let stack = crate::services(&env);
    let (base, _api) = stack.spawn_api().await;
    let books = Books::default();
    let loader = Loader::start(&base, client(), "frozen", 50, &books);
    let frozen_url = format!("{}?application_name=frozen", env.database_url);
    let mut frozen = stack.spawn_pipeline("frozen", &[("DATABASE_URL", &frozen_url)]);
    let mut steady = stack.spawn_pipeline("steady", &[]);
    let pid = frozen.id().unwrap();

    // Stop the worker while it is inside a transaction that holds locks.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never caught the worker in a transaction"
        );
        if in_transaction(&env.db, "frozen").await {
            signal(pid, "STOP").await;
            if in_transaction(&env.db, "frozen").await {
                break;
            }
            signal(pid, "CONT").await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = ledger_rows(&stack).await;

    // The other worker goes on counting: two batches more, with the frozen
    // one still stopped (bounded by FLAGMETER_DB_IDLE_IN_TRANSACTION_MS,
    // here a sixth of the 1.5 s claim idle time; a minute is the test's
    // patience, not the bound).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ledger_rows(&stack).await < before + 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "counting stopped behind the frozen worker's locks"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        frozen.try_wait().unwrap().is_none(),
        "still frozen, not dead"
    );

    signal(pid, "CONT").await;
    loader.stop().await;
    crate::audit(&stack, &books).await;
    frozen.kill().await.unwrap();
    steady.kill().await.unwrap();
}

#[tokio::test]
async fn a_default_quota_of_zero_stops_both_binaries_with_a_message_naming_it() {
    for binary in ["flagmeter-api", "flagmeter-pipeline"] {
        let run = Command::new(bin(binary))
            .env("FLAGMETER_DEFAULT_QUOTA", "0")
            .env("FLAGMETER_API_ADDR", "127.0.0.1:0")
            .env("FLAGMETER_METRICS_ADDR", "127.0.0.1:0")
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
            .env("VALKEY_URL", "redis://127.0.0.1:1")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .unwrap_or_else(|_| panic!("{binary} started anyway"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{binary}: {}", output.status);
        assert!(
            stderr.contains("FLAGMETER_DEFAULT_QUOTA"),
            "{binary}: {stderr}"
        );
    }
}
