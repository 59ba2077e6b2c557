//! Half-open connections: PostgreSQL or Valkey stops answering a worker's
//! connections without closing them (its host restarted, or a NAT or load
//! balancer forgot them, and no reset came), reproduced with
//! [`FreezingProxy`] between the worker and the service. Counting resumes by
//! itself, a worker whose commit is frozen fails its health check and ends
//! within its bound on SIGTERM, and the totals stay exact.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use testkit::{TestEnv, env as testing, freezing_proxy::FreezingProxy};
use tokio::process::{Child, Command};

use crate::support::{Books, Loader, Services, bin, client, free_port, signal};

/// The address in `url` (`scheme://[user@]host:port[/...]`).
fn address(url: &str) -> SocketAddr {
    authority(url)
        .1
        .parse()
        .unwrap_or_else(|_| panic!("{url} names an IP address and a port"))
}

/// `url` split around its `host:port`: what comes before, the address, and
/// what comes after.
fn authority(url: &str) -> (&str, &str, &str) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let start = url[start..].find('@').map_or(start, |i| start + i + 1);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    (&url[..start], &url[start..end], &url[end..])
}

/// `url` with its address replaced by the proxy's.
fn through(url: &str, proxy: &FreezingProxy) -> String {
    let (before, _, after) = authority(url);
    format!("{before}{}{after}", proxy.addr())
}

/// A proxy in front of the test's PostgreSQL, and the database URL through
/// it, its sessions named `application`.
async fn postgres_behind_proxy(env: &TestEnv, application: &str) -> (FreezingProxy, String) {
    let proxy = FreezingProxy::start(address(&env.database_url)).await;
    let url = format!(
        "{}?application_name={application}",
        through(&env.database_url, &proxy)
    );
    (proxy, url)
}

/// Ledger rows counted so far.
async fn ledger_rows(stack: &Services) -> i64 {
    stack.counted().await.values().map(|c| c.2).sum()
}

/// The backend of the worker whose sessions are named `application`, if one
/// of its statements is waiting for a lock.
async fn waiting_for_a_lock(db: &DatabaseConnection, application: &str) -> Option<i32> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pid FROM pg_stat_activity
             WHERE application_name = $1 AND wait_event_type = 'Lock'",
            [application.into()],
        ))
        .await
        .unwrap()?;
    Some(row.try_get("", "pid").unwrap())
}

/// Whether backend `pid` is still running a statement.
async fn active(db: &DatabaseConnection, pid: i32) -> bool {
    db.query_one_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active'",
        [pid.into()],
    ))
    .await
    .unwrap()
    .is_some()
}

/// Freezes the proxy while the worker whose sessions are named
/// `application` is in the middle of a commit: once it counts, the test
/// holds the ledger's lock until the worker's statement waits for it,
/// freezes, then lets go, so that the statement finishes on the server and
/// its answer never reaches the worker. Returns once the server is done
/// with it.
async fn freeze_mid_commit(stack: &Services, proxy: &FreezingProxy, application: &str) {
    testkit::eventually("the worker counts", Duration::from_secs(60), || async {
        let rows = ledger_rows(stack).await;
        if rows > 0 { Ok(()) } else { Err(rows) }
    })
    .await;
    let db = &sea_orm::Database::connect(&stack.database_url)
        .await
        .unwrap();
    let lock = db.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE events IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let pid = testkit::eventually(
        "the worker's commit waits for the ledger's lock",
        Duration::from_secs(30),
        || async { waiting_for_a_lock(db, application).await.ok_or(()) },
    )
    .await;
    proxy.freeze();
    lock.rollback().await.unwrap();
    testkit::eventually(
        "the frozen statement is done on the server",
        Duration::from_secs(30),
        || async {
            if active(db, pid).await {
                Err(pid)
            } else {
                Ok(())
            }
        },
    )
    .await;
}

/// Polls until the same `worker` has counted beyond `rows` after `service`
/// went half-open (and says how long that took), then stops the load and
/// audits.
async fn resumes_exactly(
    stack: &Services,
    rows: i64,
    service: &str,
    loader: Loader,
    books: &Books,
    mut worker: Child,
) {
    let started = Instant::now();
    testkit::eventually(
        "counting resumes (60 s is the test's patience, not the bound)",
        Duration::from_secs(60),
        || async {
            let now = ledger_rows(stack).await;
            if now > rows { Ok(()) } else { Err(now) }
        },
    )
    .await;
    eprintln!(
        "counting resumed {:?} after {service} went half-open",
        started.elapsed()
    );
    loader.stop().await;

    crate::audit(stack, books).await;
    assert!(worker.try_wait().unwrap().is_none(), "the same worker");
    worker.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counting_resumes_by_itself_after_postgres_goes_half_open_mid_commit() {
    let env = TestEnv::new().await;
    let stack = crate::services(&env);
    let (base, _api) = stack.spawn_api().await;
    let (proxy, url) = postgres_behind_proxy(&env, "half-open-pg").await;
    let worker = stack.spawn_pipeline("half-open-pg", &[("DATABASE_URL", &url)]);
    let books = Books::default();
    let loader = Loader::start(&base, client(), "half-open-pg", 50, &books);

    freeze_mid_commit(&stack, &proxy, "half-open-pg").await;
    let frozen = ledger_rows(&stack).await;
    resumes_exactly(&stack, frozen, "PostgreSQL", loader, &books, worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counting_resumes_by_itself_after_valkey_goes_half_open_mid_read() {
    let env = TestEnv::new().await;
    let stack = crate::services(&env);
    let (base, _api) = stack.spawn_api().await;
    let proxy = FreezingProxy::start(address(&testing::valkey_url())).await;
    let url = through(&testing::valkey_url(), &proxy);
    let worker = stack.spawn_pipeline("half-open-valkey", &[("VALKEY_URL", &url)]);
    let books = Books::default();
    let loader = Loader::start(&base, client(), "before", 50, &books);
    tokio::time::sleep(Duration::from_millis(500)).await;
    loader.stop().await;
    assert!(
        stack.drained(Duration::from_secs(60)).await,
        "the worker counts what came before"
    );
    let counted = ledger_rows(&stack).await;

    // The worker waits in a blocking read (and its acks' connection is
    // idle): both go half-open, while events keep coming.
    proxy.freeze();
    let loader = Loader::start(&base, client(), "after", 50, &books);
    resumes_exactly(&stack, counted, "Valkey", loader, &books, worker).await;
}

/// Runs `flagmeter-pipeline --healthcheck` against the replica serving its
/// metrics on `port`, with a stall bound of twice `claim_idle_ms`; its
/// verdict, and what it said.
async fn healthcheck(port: u16, claim_idle_ms: &str) -> (bool, String) {
    let output = Command::new(bin("flagmeter-pipeline"))
        .arg("--healthcheck")
        .env("FLAGMETER_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("FLAGMETER_CLAIM_IDLE_MS", claim_idle_ms)
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_commit_is_frozen_fails_its_health_check_and_ends_on_sigterm_within_its_bound()
 {
    let env = TestEnv::new().await;
    let stack = crate::services(&env);
    let (base, _api) = stack.spawn_api().await;
    let (proxy, url) = postgres_behind_proxy(&env, "frozen-commit").await;
    let port = free_port();
    // A claim idle time of a minute: the client gives up on the frozen
    // commit only after that, so that only shutdown can end it sooner.
    let mut worker = stack.spawn_pipeline(
        "frozen-commit",
        &[
            ("DATABASE_URL", &url),
            ("FLAGMETER_CLAIM_IDLE_MS", "60000"),
            ("FLAGMETER_METRICS_ADDR", &format!("127.0.0.1:{port}")),
        ],
    );
    let books = Books::default();
    let loader = Loader::start(&base, client(), "frozen-commit", 50, &books);
    // The health check probes with a bound of 2 s (twice a claim idle time
    // of 1 s) rather than the replica's two minutes, to see it fail soon.
    testkit::eventually(
        "the health check passes while the worker counts",
        Duration::from_secs(30),
        || async {
            let (healthy, said) = healthcheck(port, "1000").await;
            if healthy { Ok(()) } else { Err(said) }
        },
    )
    .await;

    freeze_mid_commit(&stack, &proxy, "frozen-commit").await;
    let said = testkit::eventually(
        "the health check fails while the commit is frozen and events wait",
        Duration::from_secs(30),
        || async {
            let (healthy, said) = healthcheck(port, "1000").await;
            if healthy { Err(said) } else { Ok(said) }
        },
    )
    .await;
    assert!(said.contains("no progress"), "{said}");

    let stopping = Instant::now();
    signal(worker.id().unwrap(), "TERM").await;
    let status = tokio::time::timeout(Duration::from_secs(10), worker.wait())
        .await
        .expect("SIGTERM ends the worker within 10 s, its commit still frozen")
        .unwrap();
    eprintln!(
        "the worker with a frozen commit ended {:?} after SIGTERM",
        stopping.elapsed()
    );
    assert!(status.success(), "exit status {status}");
    loader.stop().await;

    crate::audit_after_a_new_worker_drains(&stack, &books, "after-frozen").await;
}
