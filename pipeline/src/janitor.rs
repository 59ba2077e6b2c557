//! Housekeeping that keeps the stream and the ledger from growing forever,
//! without ever removing something still needed.
//!
//! **Stream trimming.** Each shard is trimmed on its own. An entry may go once every consumer group has
//! acknowledged it: it is at or before the group's last-delivered id and no
//! longer pending. So the stream is trimmed with `XTRIM MINID` just below the
//! oldest entry that some group still has pending or has not yet been
//! delivered. Never `MAXLEN`, which deletes by count, read or not.
//!
//! **Ledger retention.** The `events` ledger is the dedupe window: a client
//! may retry an event as long as its timestamp is within the 35-day backdating
//! window. Rows received longer ago than the retention (never less than that
//! window, plus an hour's margin for clock skew) are deleted in small batches,
//! so that ingest and counting are never blocked behind one long DELETE.
//! Rollups stay.

use std::time::Duration;

use redis::{AsyncCommands, RedisError, aio::ConnectionLike};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use tokio_util::sync::CancellationToken;

use stream::{EntryId, Shards, StreamKeys, Valkey};

use crate::stale_consumers;

/// Rows deleted per retention statement.
const RETENTION_BATCH: i64 = 5_000;
/// How often the ledger is swept.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);
/// Longest sweep; the rest waits for the next one.
const RETENTION_BOUND: Duration = Duration::from_secs(300);

/// The housekeeping task of one replica.
pub struct Janitor {
    /// Shared with the workers' acks and claims.
    pub valkey: Valkey,
    pub db: DatabaseConnection,
    pub shards: Shards,
    /// How often the shards are trimmed and the backlog gauges sampled.
    pub trim_interval: Duration,
    /// Days a ledger row is kept after receipt.
    pub retention_days: u32,
    /// Idle time after which a consumer that owns nothing is removed
    /// ([`crate::stale_consumers`]).
    pub stale_consumer_idle: Duration,
}

impl Janitor {
    /// Every `trim_interval`, samples the backlog gauges and trims every
    /// shard; sweeps the ledger hourly; until shutdown. Failures are logged
    /// and tried again next time: nothing here is urgent, and nothing is
    /// lost by waiting.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut next_sweep = tokio::time::Instant::now();
        loop {
            for (shard, keys) in self.shards.all().iter().enumerate() {
                if let Err(err) = sample_backlog(&mut self.valkey, keys, shard).await {
                    tracing::debug!(%err, shard, "cannot sample the backlog");
                }
                match trim_stream(&mut self.valkey, keys).await {
                    Ok(0) => {}
                    Ok(trimmed) => {
                        tracing::debug!(trimmed, shard, "trimmed acknowledged stream history");
                    }
                    Err(err) => tracing::warn!(%err, shard, "cannot trim the stream"),
                }
                match stale_consumers::remove(&mut self.valkey, keys, self.stale_consumer_idle)
                    .await
                {
                    Ok(removed) if removed.is_empty() => {}
                    Ok(removed) => tracing::info!(?removed, shard, "removed stale consumers"),
                    Err(err) => tracing::warn!(%err, shard, "cannot remove stale consumers"),
                }
            }
            let pool = self.db.get_postgres_connection_pool();
            let idle = pool.num_idle() as f64;
            metrics::gauge!("flagmeter_db_pool_connections", "state" => "idle").set(idle);
            metrics::gauge!("flagmeter_db_pool_connections", "state" => "in_use")
                .set(f64::from(pool.size()) - idle);
            if tokio::time::Instant::now() >= next_sweep {
                // Bounded, so that a PostgreSQL connection gone silent
                // cannot stop the trimming for good.
                let sweep = expire_ledger(&self.db, self.retention_days, &shutdown);
                match tokio::time::timeout(RETENTION_BOUND, sweep).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(deleted)) => {
                        tracing::info!(deleted, "expired ledger rows past retention")
                    }
                    Ok(Err(err)) => tracing::warn!(%err, "cannot expire ledger rows"),
                    Err(_) => {
                        tracing::warn!("expiring ledger rows took too long; trying again later")
                    }
                }
                next_sweep += RETENTION_INTERVAL;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.trim_interval) => {}
            }
        }
    }
}

/// The id below which every entry has been acknowledged by every group, or
/// `None` when nothing may be trimmed (no group, or nothing delivered yet).
pub async fn safe_trim_point<C>(
    conn: &mut C,
    keys: &StreamKeys,
) -> Result<Option<String>, RedisError>
where
    C: ConnectionLike + Send + Sync,
{
    let groups: redis::streams::StreamInfoGroupsReply = conn.xinfo_groups(&keys.stream).await?;
    let mut point: Option<EntryId> = None;
    for group in &groups.groups {
        let Ok(last_delivered) = group.last_delivered_id.parse::<EntryId>() else {
            return Ok(None);
        };
        // The first entry this group has not been delivered yet.
        let mut keep_from = last_delivered.next();
        if group.pending > 0 {
            let pending: redis::streams::StreamPendingReply =
                conn.xpending(&keys.stream, &group.name).await?;
            if let redis::streams::StreamPendingReply::Data(data) = pending
                && let Ok(oldest) = data.start_id.parse::<EntryId>()
            {
                keep_from = keep_from.min(oldest);
            }
        }
        point = Some(point.map_or(keep_from, |p| p.min(keep_from)));
    }
    Ok(point
        .filter(|&p| p > EntryId { ms: 0, seq: 1 })
        .map(|p| p.to_string()))
}

/// A shard's length, and its group's lag (undelivered) and pending
/// entries, labelled with the shard's number.
async fn sample_backlog<C>(conn: &mut C, keys: &StreamKeys, shard: usize) -> Result<(), RedisError>
where
    C: ConnectionLike + Send + Sync,
{
    let label = [("shard", shard.to_string())];
    let length: u64 = conn.xlen(&keys.stream).await?;
    metrics::gauge!("flagmeter_stream_length_entries", &label).set(length as f64);
    let groups: redis::streams::StreamInfoGroupsReply = conn.xinfo_groups(&keys.stream).await?;
    if let Some(group) = groups.groups.iter().find(|g| g.name == keys.group) {
        metrics::gauge!("flagmeter_consumer_group_pending_entries", &label)
            .set(group.pending as f64);
        if let Some(lag) = group.lag {
            metrics::gauge!("flagmeter_consumer_group_lag_entries", &label).set(lag as f64);
        }
    }
    Ok(())
}

/// Trims acknowledged history; returns how many entries went.
pub async fn trim_stream<C>(conn: &mut C, keys: &StreamKeys) -> Result<u64, RedisError>
where
    C: ConnectionLike + Send + Sync,
{
    let Some(point) = safe_trim_point(conn, keys).await? else {
        return Ok(0);
    };
    redis::cmd("XTRIM")
        .arg(&keys.stream)
        .arg("MINID")
        .arg(&point)
        .query_async(conn)
        .await
}

/// Deletes ledger rows received more than `retention_days` (+1 h) ago, a
/// batch at a time; returns how many went.
pub async fn expire_ledger<C: ConnectionTrait>(
    db: &C,
    retention_days: u32,
    shutdown: &CancellationToken,
) -> Result<u64, DbErr> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "DELETE FROM events WHERE (tenant, id) IN (
             SELECT tenant, id FROM events
             WHERE received_at < now() - make_interval(days => $1) - interval '1 hour'
             LIMIT $2)",
        [(retention_days as i32).into(), RETENTION_BATCH.into()],
    );
    let mut deleted = 0;
    while !shutdown.is_cancelled() {
        let batch = db.execute_raw(statement.clone()).await?.rows_affected();
        deleted += batch;
        if batch < RETENTION_BATCH as u64 {
            break;
        }
        // Let other work through between batches.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(deleted)
}
