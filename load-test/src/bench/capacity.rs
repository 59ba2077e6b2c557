//! docs/SCALING.md's inputs: what one counted event costs on disk and in
//! WAL, and what retention by DELETE (the janitor's statement, over the
//! older half of the ledger) costs per row. 200 tenants, one replica, every
//! fill audited.

use anyhow::Context;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tokio::time::Instant;

use crate::{drain::fill, postgres, services::Bench};

const TENANTS: usize = 200;
/// Rows the janitor deletes per statement.
const DELETE_CHUNK: i64 = 10_000;

pub async fn run(bench: &Bench, events: u64) -> anyhow::Result<()> {
    for number in 1..=bench.settings.runs {
        let filled = fill(bench, events, TENANTS, &format!("capacity-{number}")).await?;
        let db = postgres::connect(&filled.run.database_url).await?;
        let wal_before = text(&db, "SELECT pg_current_wal_lsn()::text").await?;
        let worker = filled.run.start_worker(1)?;
        filled.run.wait_idle().await?;
        let wal_counted = number_of(
            &db,
            &format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{wal_before}')::float8"),
        )
        .await?;
        worker.stop().await;
        filled.loader.resume();
        let report = filled.loader.finish().await?;

        db.execute_unprepared("VACUUM ANALYZE events, rollups, daily_rollups")
            .await?;
        let size = |table: &str| {
            format!(
                "SELECT (SELECT count(*) FROM {table})::float8, pg_relation_size('{table}')::float8, \
                 pg_indexes_size('{table}')::float8"
            )
        };
        let (rows, heap, indexes) = floats(&db, &size("events")).await?;
        let (rollup_rows, rollup_heap, rollup_indexes) = floats(&db, &size("rollups")).await?;
        let (daily_rows, _, _) = floats(&db, &size("daily_rollups")).await?;

        let cut = text(
            &db,
            "SELECT (percentile_disc(0.5) WITHIN GROUP (ORDER BY received_at))::text FROM events",
        )
        .await?;
        let wal_before = text(&db, "SELECT pg_current_wal_lsn()::text").await?;
        let start = Instant::now();
        let mut deleted = 0.0;
        loop {
            let batch = number_of(
                &db,
                &format!(
                    "WITH gone AS (DELETE FROM events WHERE (tenant, id) IN (SELECT tenant, id FROM events \
                     WHERE received_at < '{cut}' LIMIT {DELETE_CHUNK}) RETURNING 1) SELECT count(*)::float8 FROM gone"
                ),
            )
            .await?;
            deleted += batch;
            if batch < DELETE_CHUNK as f64 {
                break;
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        let wal_deleted = number_of(
            &db,
            &format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{wal_before}')::float8"),
        )
        .await?;
        db.close().await.ok();
        filled.api.service.stop().await;
        println!(
            "capacity events={rows:.0} audit_match={} wal_per_event={:.0} ledger_heap_per_row={:.0} \
             ledger_indexes_per_row={:.0} rollup_rows={rollup_rows:.0} rollup_bytes_per_row={:.0} \
             daily_rows={daily_rows:.0} retention_deleted={deleted:.0} retention_rows_per_s={:.0} \
             retention_wal_per_row={:.0}",
            report
                .audit_match()
                .map_or("-".to_owned(), |m| m.to_string()),
            wal_counted / rows.max(1.0),
            heap / rows.max(1.0),
            indexes / rows.max(1.0),
            (rollup_heap + rollup_indexes) / rollup_rows.max(1.0),
            deleted / seconds.max(f64::EPSILON),
            wal_deleted / deleted.max(1.0),
        );
    }
    Ok(())
}

/// The one text value `sql` selects. The values written into later
/// statements (an LSN, a timestamp) come from PostgreSQL itself.
async fn text(db: &DatabaseConnection, sql: &str) -> anyhow::Result<String> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .with_context(|| format!("no row from {sql}"))?;
    Ok(row.try_get_by_index(0)?)
}

async fn number_of(db: &DatabaseConnection, sql: &str) -> anyhow::Result<f64> {
    Ok(floats(db, sql).await?.0)
}

/// The first (up to three) float columns of the one row `sql` selects.
async fn floats(db: &DatabaseConnection, sql: &str) -> anyhow::Result<(f64, f64, f64)> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .with_context(|| format!("no row from {sql}"))?;
    let column = |i: usize| row.try_get_by_index::<f64>(i).unwrap_or(0.0);
    Ok((row.try_get_by_index::<f64>(0)?, column(1), column(2)))
}
