//! The worker: read (or `reclaim`) → `decode` → `commit` → settle
//! (evaluate alerts, ack), until shutdown; one module a step.
//!
//! The steps run as three stages at once, each handing its batch to the
//! next as soon as it is done with it, so that Valkey and PostgreSQL work
//! at once and PostgreSQL's counting backend never waits for the worker:
//! while batch N commits, batch N+1 is read, and as soon as N's COMMIT
//! returns N is settled (its tenants' alerts evaluated, the alert sender
//! woken if one became due, its entries acknowledged) while N+1 commits.
//! Each hand-off holds one batch, and the reader reads only once the
//! counting has taken the batch before: at most one batch is read ahead.
//!
//! Each batch is committed, and its tenants' alerts evaluated against the
//! committed totals (`alerts::rules::evaluate`), before any of it is
//! acknowledged; every step that must happen (dead letter, commit,
//! evaluation, ack) is retried until it does, so a failure anywhere leaves
//! entries pending rather than lost; the ledger makes their redelivery
//! harmless, and the alert outbox's unique key makes their re-evaluation
//! harmless. Periodically the worker also takes over entries
//! that a crashed replica left pending, dead-lettering those that have been
//! delivered too often (an entry that kills every worker that reads it).
//!
//! Every wait is bounded: a Valkey command by its reply timeout, a
//! PostgreSQL step by `TransactionBounds::answered`. A step that times out
//! (its connection half-open) is dropped with its connection and retried
//! like any failed step; its batch stays pending meanwhile. A stage that
//! waits never holds up the others beyond its own bound, and each stage
//! marks the worker's progress ([`crate::liveness`]) as it completes a step.
//!
//! Shutdown stops the reading at once, and is honoured between steps and
//! while waiting to retry one; the batches in hand are finished (within the
//! grace a stopping replica gives them, [`crate::app`]). Should shutdown
//! come while PostgreSQL or Valkey is down, or the grace run out, the
//! batches stay pending and another replica (or this one, restarted)
//! counts them.

use std::time::Duration;

use alerts::sender::AlertsDue;
use runtime::config::TransactionBounds;
use sea_orm::DatabaseConnection;
use store::dead_letter;
use stream::EventRecord;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    consumer::{Consumer, Delivery},
    liveness::Progress,
    retry::{Stopped, until_done},
    writer,
};

mod commit;
mod decode;
mod reclaim;

use decode::Batch;
use reclaim::ReclaimScan;

/// A deliberate crash, for fault-injection tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Failpoint {
    /// Abort the process after a batch is committed, before its alerts are
    /// evaluated and before it is acked.
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
    /// How long a PostgreSQL step may take, on the server and here.
    pub db_bounds: TransactionBounds,
    pub failpoint: Option<Failpoint>,
}

/// A batch whose effect is committed, waiting for its alerts to be
/// evaluated and its entries acknowledged.
struct Committed {
    batch: Batch,
    written: writer::Written,
}

/// One consumer-group member counting into PostgreSQL.
pub struct Worker {
    consumer: Consumer,
    db: DatabaseConnection,
    settings: WorkerSettings,
    /// Woken when a settled batch recorded an alert.
    alerts_due: AlertsDue,
    progress: Progress,
}

impl Worker {
    pub fn new(
        consumer: Consumer,
        db: DatabaseConnection,
        settings: WorkerSettings,
        alerts_due: AlertsDue,
        progress: Progress,
    ) -> Self {
        Self {
            consumer,
            db,
            settings,
            alerts_due,
            progress,
        }
    }

    /// Runs until `shutdown` is cancelled; returns once the batches in hand
    /// (the one read ahead, the one being counted and the one being
    /// settled) are finished, or left pending if they cannot be.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(
            consumer = self.consumer.name(),
            stream = %self.consumer.keys().stream,
            "worker started"
        );
        let (to_count, read) = mpsc::channel(1);
        let (to_settle, committed) = mpsc::channel(1);
        tokio::join!(
            self.read_stage(to_count, &shutdown),
            self.count_stage(read, to_settle, &shutdown),
            self.settle_stage(committed, &shutdown),
        );
        tracing::info!(consumer = self.consumer.name(), "worker stopped");
    }

    /// Reads batches, taken over when a reclaim scan is due, else new ones
    /// (waiting up to the block time), until shutdown or until the counting
    /// stops.
    async fn read_stage(
        &self,
        to_count: mpsc::Sender<Vec<Delivery>>,
        shutdown: &CancellationToken,
    ) {
        let mut scan = ReclaimScan::due_now();
        loop {
            // Only once the counting has taken the batch before: one batch
            // ahead at most, so that entries wait pending at most two
            // batches' time.
            let slot = tokio::select! {
                _ = shutdown.cancelled() => return,
                slot = to_count.reserve() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
            };
            let read = if scan.is_due() {
                self.reclaim(&mut scan, shutdown).await
            } else {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    read = until_done("read", shutdown, || self.consumer.read()) => read,
                }
            };
            let Ok(batch) = read else { return };
            self.progress.mark();
            if !batch.is_empty() {
                slot.send(batch);
            }
        }
    }

    /// Counts each batch read, and hands it on to be settled.
    async fn count_stage(
        &self,
        mut read: mpsc::Receiver<Vec<Delivery>>,
        to_settle: mpsc::Sender<Committed>,
        shutdown: &CancellationToken,
    ) {
        while let Some(deliveries) = read.recv().await {
            let Ok(committed) = self.count(deliveries, shutdown).await else {
                return;
            };
            self.progress.mark();
            if to_settle.send(committed).await.is_err() {
                return;
            }
        }
    }

    /// Settles each committed batch as soon as its COMMIT returned.
    async fn settle_stage(
        &self,
        mut committed: mpsc::Receiver<Committed>,
        shutdown: &CancellationToken,
    ) {
        while let Some(done) = committed.recv().await {
            if self.settle(done, shutdown).await.is_err() {
                return;
            }
            self.progress.mark();
        }
    }

    /// Counts one batch: decoded, its undecodable entries dead-lettered,
    /// its records committed.
    #[tracing::instrument(name = "batch", skip_all, fields(entries = deliveries.len()))]
    async fn count(
        &self,
        deliveries: Vec<Delivery>,
        shutdown: &CancellationToken,
    ) -> Result<Committed, Stopped> {
        metrics::counter!("flagmeter_events_read_total").increment(deliveries.len() as u64);
        metrics::histogram!("flagmeter_batch_size_events").record(deliveries.len() as f64);
        let batch = Batch::decode(deliveries);
        for refused in batch.refused() {
            self.dead_letter(
                &refused.delivery,
                &refused.reason,
                "undecodable",
                1,
                shutdown,
            )
            .await?;
        }
        let written = self.commit(&batch, shutdown).await?;
        record_lag(batch.records());
        if self.settings.failpoint == Some(Failpoint::CrashAfterCommit) {
            tracing::warn!("failpoint crash-after-commit: aborting before evaluation and ack");
            std::process::abort();
        }
        Ok(Committed { batch, written })
    }

    /// Finishes a committed batch: its tenants' alerts evaluated against
    /// the committed totals (the sender woken if one became due), then its
    /// entries acknowledged. If shutdown stops it, the entries stay pending,
    /// and whoever counts them again (nothing new) evaluates them again.
    #[tracing::instrument(name = "settle", skip_all)]
    async fn settle(&self, done: Committed, shutdown: &CancellationToken) -> Result<(), Stopped> {
        let Committed { batch, written } = done;
        // The whole batch, not only what this delivery counted: a batch
        // redelivered after a crash between COMMIT and here is evaluated now.
        let tenants = writer::tenants_of(batch.records());
        let alerts_fired = until_done("evaluate alerts", shutdown, || {
            let evaluate = alerts::rules::evaluate(&self.db, &tenants, chrono::Utc::now());
            self.settings.db_bounds.answered(evaluate)
        })
        .await?;
        if alerts_fired > 0 {
            self.alerts_due.wake();
        }
        record_counted(&written, alerts_fired);
        until_done("ack", shutdown, || self.consumer.ack(batch.ids())).await?;
        let elapsed = batch.read_at().elapsed();
        metrics::histogram!("flagmeter_batch_duration_seconds").record(elapsed.as_secs_f64());
        tracing::debug!(
            entries = batch.ids().len(),
            counted = written.counted,
            voided = written.voided,
            elapsed_ms = elapsed.as_millis() as u64,
            "batch settled"
        );
        Ok(())
    }

    /// Sets an entry that can never be counted aside as a dead letter (in
    /// PostgreSQL, so that this works while Valkey is out of memory), before
    /// the caller acks it.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        reason: &str,
        kind: &'static str,
        deliveries: usize,
        shutdown: &CancellationToken,
    ) -> Result<(), Stopped> {
        tracing::warn!(entry = %delivery.id, reason, "setting the entry aside as a dead letter");
        metrics::counter!("flagmeter_events_dead_lettered_total", "reason" => kind).increment(1);
        let letter = dead_letter::DeadLetter {
            stream: &self.consumer.keys().stream,
            original_id: &delivery.id,
            kind,
            reason,
            consumer: self.consumer.name(),
            deliveries,
            payload: delivery.payload.as_deref(),
        };
        until_done("dead letter", shutdown, || {
            self.settings.db_bounds.answered(letter.write(&self.db))
        })
        .await
    }
}

/// How long each event took from the api's receipt to its commit, which
/// has just returned.
fn record_lag(records: &[EventRecord]) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let lag = metrics::histogram!("flagmeter_end_to_end_lag_seconds");
    for record in records {
        lag.record((now_ms - record.received_ms).max(0) as f64 / 1000.0);
    }
}

/// Per-batch counters of a settled batch: counted, duplicates, voids,
/// alerts.
fn record_counted(written: &writer::Written, alerts_fired: u64) {
    metrics::counter!("flagmeter_events_counted_total").increment(written.counted);
    metrics::counter!("flagmeter_events_duplicate_total").increment(written.duplicates);
    metrics::counter!("flagmeter_events_voided_total").increment(written.voided);
    metrics::counter!("flagmeter_alerts_fired_total").increment(alerts_fired);
}
