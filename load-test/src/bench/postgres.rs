//! PostgreSQL as the bench sees it: a fresh database per run, the pids of
//! the backends the workers open (whose CPU counts towards an event's cost),
//! what active backends wait on, and the bare ledger insert rate that puts a
//! drain's rate in proportion.

use std::{collections::BTreeSet, time::Duration};

use anyhow::Context;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One connection to the server's `postgres` database.
pub async fn admin(server: &str) -> anyhow::Result<DatabaseConnection> {
    connect(&format!("{server}/postgres")).await
}

/// A single-connection pool: each sampler or measurement is one backend.
pub async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options.max_connections(1).sqlx_logging(false);
    Database::connect(options)
        .await
        .with_context(|| format!("PostgreSQL at {url}"))
}

/// Drops `database` (closing its sessions) and creates it empty; the api
/// migrates it when it starts.
pub async fn recreate(admin: &DatabaseConnection, database: &str) -> anyhow::Result<()> {
    // `database` is a checked identifier (cli::database_name).
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {database}"))
        .await?;
    Ok(())
}

/// The pids of `database`'s client backends.
pub async fn backends(admin: &DatabaseConnection, database: &str) -> anyhow::Result<BTreeSet<u32>> {
    let rows = admin
        .query_all_raw(Statement::from_sql_and_values(
            admin.get_database_backend(),
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'",
            [Value::from(database)],
        ))
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| row.try_get::<i32>("", "pid").ok())
        .filter_map(|pid| u32::try_from(pid).ok())
        .collect())
}

/// Samples what each active client backend of `database` waits on, every
/// 100 ms from one session, until `stop`: `CPU` when it waits on nothing,
/// else `type:event` (`Lock:transactionid`, `IO:WALSync`, ...).
pub async fn sample_waits(
    server: String,
    database: String,
    stop: CancellationToken,
) -> anyhow::Result<Vec<String>> {
    let db = admin(&server).await?;
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(
                db.get_database_backend(),
                "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS wait \
                 FROM pg_stat_activity WHERE datname = $1 AND state = 'active' \
                 AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                [Value::from(database.as_str())],
            ))
            .await?;
        samples.extend(
            rows.iter()
                .filter_map(|row| row.try_get::<String>("", "wait").ok()),
        );
    }
    db.close().await.ok();
    Ok(samples)
}

/// The three commonest waits and their counts, with the share of lock
/// waits: `Lock:* 3/120, top [CPU 80, IO:WALSync 20, ...]`.
pub fn describe_waits(samples: &[String]) -> String {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for sample in samples {
        *counts.entry(sample).or_default() += 1;
    }
    let mut top: Vec<_> = counts.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let locks = samples.iter().filter(|s| s.starts_with("Lock:")).count();
    let top = top
        .iter()
        .take(3)
        .map(|(wait, n)| format!("{wait} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("lock_waits={locks}/{} top=[{top}]", samples.len())
}

/// Rows per second that one backend inserts into a bare copy of the ledger
/// (same columns, defaults and indexes; no rollups, no alert check), in
/// batches of `batch` rows taken from the drained ledger, with the
/// workers' `ON CONFLICT DO NOTHING`. Measured after the drain, in the same
/// database, so a drain's rate can be read as a share of it. `None` when
/// the ledger cannot be copied this way (a schema the statement does not
/// fit): the figure is then missing, not the run.
pub async fn bare_ledger_rate(database_url: &str, batch: usize) -> Option<f64> {
    let db = connect(database_url).await.ok()?;
    let setup = [
        "DROP TABLE IF EXISTS bench_bare_ledger, bench_bare_source",
        "CREATE TABLE bench_bare_ledger (LIKE events INCLUDING DEFAULTS INCLUDING INDEXES)",
        "CREATE TABLE bench_bare_source AS \
         SELECT row_number() OVER () AS n, e AS row FROM events e",
        "CREATE INDEX ON bench_bare_source (n)",
        "ANALYZE bench_bare_source",
    ];
    for statement in setup {
        if let Err(err) = db.execute_unprepared(statement).await {
            eprintln!("flagmeter-bench: no bare ledger insert figure: {err}");
            return None;
        }
    }
    let total: i64 = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS n FROM bench_bare_source",
        ))
        .await
        .ok()??
        .try_get("", "n")
        .ok()?;
    let batch = i64::try_from(batch.max(1)).ok()?;
    let start = Instant::now();
    let mut from = 0;
    while from < total {
        let inserted = db
            .execute_raw(Statement::from_sql_and_values(
                db.get_database_backend(),
                "INSERT INTO bench_bare_ledger SELECT (row).* FROM bench_bare_source \
                 WHERE n > $1 AND n <= $2 ON CONFLICT DO NOTHING",
                [Value::from(from), Value::from(from + batch)],
            ))
            .await;
        if let Err(err) = inserted {
            eprintln!("flagmeter-bench: no bare ledger insert figure: {err}");
            return None;
        }
        from += batch;
    }
    let seconds = start.elapsed().as_secs_f64();
    db.execute_unprepared("DROP TABLE bench_bare_ledger, bench_bare_source")
        .await
        .ok();
    db.close().await.ok();
    (total > 0).then(|| total as f64 / seconds)
}
