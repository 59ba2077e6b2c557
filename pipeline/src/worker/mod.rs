//! The worker loop: read (or [`reclaim`]) → [`decode`] → [`commit`] → ack,
//! until shutdown; one module a step.
//!
//! Each batch is committed before any of it is acknowledged, and every step
//! that must happen (dead letter, commit, ack) is retried until it does, so a
//! failure anywhere leaves entries pending rather than lost; the ledger makes
//! their redelivery harmless. Periodically the worker also takes over entries
//! that a crashed replica left pending, dead-lettering those that have been
//! delivered too often (an entry that kills every worker that reads it).
//!
//! Shutdown is honoured between steps and while waiting (a blocking read, a
//! backoff sleep), never in the middle of a commit: the batch in hand is
//! finished. Should shutdown come while PostgreSQL or Valkey is down, the
//! batch stays pending and another replica (or this one, restarted) counts it.

use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;
use stream::EventRecord;
use tokio_util::sync::CancellationToken;

use crate::{
    consumer::{Consumer, Delivery},
    dead_letter,
    retry::until_done,
    writer,
};

mod commit;
mod decode;
mod reclaim;

use commit::Committed;
use reclaim::ReclaimScan;

/// A deliberate crash, for fault-injection tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Failpoint {
    /// Abort the process after a batch is committed and before it is acked.
    CrashAfterCommit,
}

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub new_tenants: writer::NewTenants,
    pub claim_interval: Duration,
    /// An entry delivered more often than this is dead-lettered.
    pub max_deliveries: usize,
    /// A batch in hand longer than this has its entries' idle time reset.
    pub keep_fresh_after: Duration,
    pub failpoint: Option<Failpoint>,
}

/// One consumer-group member counting into PostgreSQL.
pub struct Worker {
    consumer: Consumer,
    db: DatabaseConnection,
    settings: WorkerSettings,
}

impl Worker {
    pub fn new(consumer: Consumer, db: DatabaseConnection, settings: WorkerSettings) -> Self {
        Self {
            consumer,
            db,
            settings,
        }
    }

    /// Runs until `shutdown` is cancelled; returns once the batch in hand is
    /// finished (or left pending, if it cannot be).
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(consumer = self.consumer.name(), "worker started");
        let mut scan = ReclaimScan::due_now();
        while !shutdown.is_cancelled() {
            let Some(batch) = self.next_batch(&mut scan, &shutdown).await else {
                break;
            };
            if !batch.is_empty() && self.process(batch, &shutdown).await.is_none() {
                break;
            }
        }
        tracing::info!(consumer = self.consumer.name(), "worker stopped");
    }

    /// Entries to count: taken over when a reclaim scan is due, else new
    /// ones (waiting up to the block time). `None` on shutdown.
    async fn next_batch(
        &self,
        scan: &mut ReclaimScan,
        shutdown: &CancellationToken,
    ) -> Option<Vec<Delivery>> {
        if scan.is_due() {
            return self.reclaim(scan, shutdown).await;
        }
        tokio::select! {
            _ = shutdown.cancelled() => None,
            read = until_done("read", shutdown, || self.consumer.read()) => read,
        }
    }

    /// Counts one batch and acknowledges it. `None` if shutdown came while a
    /// step was failing: the rest of the batch stays pending.
    #[tracing::instrument(name = "batch", skip_all, fields(entries = deliveries.len()))]
    async fn process(&self, deliveries: Vec<Delivery>, shutdown: &CancellationToken) -> Option<()> {
        let started = Instant::now();
        metrics::counter!("flagmeter_events_read_total").increment(deliveries.len() as u64);
        metrics::histogram!("flagmeter_batch_size_events").record(deliveries.len() as f64);
        let batch = decode::decode(deliveries);
        for (delivery, reason) in &batch.refused {
            self.dead_letter(delivery, reason, "undecodable", 1, shutdown)
                .await?;
        }
        let committed = self
            .commit(
                &batch.records,
                &batch.sources,
                &batch.ids,
                started,
                shutdown,
            )
            .await?;
        record_committed(&batch.records, committed);
        if self.settings.failpoint == Some(Failpoint::CrashAfterCommit) {
            tracing::warn!("failpoint crash-after-commit: aborting before the ack");
            std::process::abort();
        }
        until_done("ack", shutdown, || self.consumer.ack(&batch.ids)).await?;
        metrics::histogram!("flagmeter_batch_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        tracing::debug!(
            entries = batch.ids.len(),
            counted = committed.counted,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "batch committed"
        );
        Some(())
    }

    /// Writes a dead letter for an entry that can never be counted (before
    /// the caller acks it). `None` on shutdown while Valkey fails.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        reason: &str,
        kind: &'static str,
        deliveries: usize,
        shutdown: &CancellationToken,
    ) -> Option<()> {
        tracing::warn!(entry = %delivery.id, reason, "moving entry to the dead-letter stream");
        metrics::counter!("flagmeter_events_dead_lettered_total", "reason" => kind).increment(1);
        let letter = dead_letter::DeadLetter {
            original_id: &delivery.id,
            reason,
            consumer: self.consumer.name(),
            deliveries,
            payload: delivery.payload.as_deref(),
        };
        until_done("dead letter", shutdown, || async {
            letter
                .write(&mut self.consumer.commands(), &self.consumer.keys().dead)
                .await
        })
        .await
    }
}

/// Per-batch metrics of a commit: counted, duplicates, alerts, and how long
/// each event took from the api's receipt to this commit.
fn record_committed(records: &[EventRecord], committed: Committed) {
    metrics::counter!("flagmeter_events_counted_total").increment(committed.counted);
    metrics::counter!("flagmeter_events_duplicate_total")
        .increment((records.len() as u64).saturating_sub(committed.counted));
    metrics::counter!("flagmeter_alerts_fired_total").increment(committed.alerts_fired);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let lag = metrics::histogram!("flagmeter_end_to_end_lag_seconds");
    for record in records {
        lag.record((now_ms - record.received_ms).max(0) as f64 / 1000.0);
    }
}
