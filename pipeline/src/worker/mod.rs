//! The worker loop: read (or [`reclaim`]) → [`decode`] → [`commit`] →
//! evaluate alerts → ack, until shutdown; one module a step. Three batches
//! are in hand at once, each at another step, so that Valkey and PostgreSQL
//! work at once and PostgreSQL's counting backend never waits for the
//! worker: while batch N commits, batch N+1 is read and batch N-1 (already
//! committed) has its alerts evaluated and its entries acknowledged. When
//! nothing was read ahead, the committed batch is settled before the worker
//! waits for more, so that an idle stream is never left with entries
//! pending.
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
//! Shutdown is honoured between steps and while waiting (a blocking read, a
//! backoff sleep), never in the middle of a commit: the batch in hand is
//! finished. Should shutdown come while PostgreSQL or Valkey is down, the
//! batch stays pending and another replica (or this one, restarted) counts it.

use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;
use store::dead_letter;
use stream::EventRecord;
use tokio_util::sync::CancellationToken;

use crate::{
    consumer::{Consumer, Delivery},
    retry::until_done,
    writer,
};

mod commit;
mod decode;
mod reclaim;

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
    pub failpoint: Option<Failpoint>,
}

/// A batch whose effect is committed, waiting for its alerts to be
/// evaluated and its entries acknowledged.
struct Committed {
    records: Vec<EventRecord>,
    /// Every entry of the batch, counted or dead-lettered: all are acked.
    ids: Vec<String>,
    written: writer::Written,
    /// When the batch was read, for the batch duration metric.
    started: Instant,
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

    /// Runs until `shutdown` is cancelled; returns once the batches in hand
    /// (the one being counted, the one read ahead and the one being
    /// settled) are finished (or left pending, if they cannot be).
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(
            consumer = self.consumer.name(),
            stream = %self.consumer.keys().stream,
            "worker started"
        );
        let mut scan = ReclaimScan::due_now();
        let mut ahead: Option<Vec<Delivery>> = None;
        let mut committed: Option<Committed> = None;
        loop {
            let batch = match ahead.take() {
                Some(batch) => batch,
                None => {
                    // Nothing in hand to overlap with: settle the committed
                    // batch before waiting for (or reclaiming) more.
                    if self.settle(committed.take(), &shutdown).await.is_none() {
                        break;
                    }
                    if shutdown.is_cancelled() {
                        break;
                    }
                    match self.next_batch(&mut scan, &shutdown).await {
                        Some(batch) => batch,
                        None => break,
                    }
                }
            };
            if batch.is_empty() {
                continue;
            }
            // Not when a reclaim is due (it goes first) or shutdown has begun.
            let read_ahead = !shutdown.is_cancelled() && !scan.is_due();
            let (counted, next, settled) = tokio::join!(
                self.count(batch, &shutdown),
                self.read_ahead(read_ahead, &shutdown),
                self.settle(committed.take(), &shutdown),
            );
            ahead = next;
            committed = counted;
            if committed.is_none() || settled.is_none() {
                break;
            }
        }
        self.settle(committed, &shutdown).await;
        tracing::info!(consumer = self.consumer.name(), "worker stopped");
    }

    /// The next batch, read while the current one is counted; `None` if none
    /// came within the block time, the read failed (the loop reads again,
    /// with retries) or shutdown came first.
    async fn read_ahead(
        &self,
        enabled: bool,
        shutdown: &CancellationToken,
    ) -> Option<Vec<Delivery>> {
        if !enabled {
            return None;
        }
        tokio::select! {
            _ = shutdown.cancelled() => None,
            read = self.consumer.read() => match read {
                Ok(batch) => Some(batch).filter(|b| !b.is_empty()),
                Err(err) => {
                    tracing::warn!(%err, "read ahead failed; reading again after the batch");
                    None
                }
            },
        }
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

    /// Counts one batch: decoded, its undecodable entries dead-lettered,
    /// its records committed. `None` if shutdown came while a step was
    /// failing: the batch stays pending.
    #[tracing::instrument(name = "batch", skip_all, fields(entries = deliveries.len()))]
    async fn count(
        &self,
        deliveries: Vec<Delivery>,
        shutdown: &CancellationToken,
    ) -> Option<Committed> {
        let started = Instant::now();
        metrics::counter!("flagmeter_events_read_total").increment(deliveries.len() as u64);
        metrics::histogram!("flagmeter_batch_size_events").record(deliveries.len() as f64);
        let batch = decode::decode(deliveries);
        for (delivery, reason) in &batch.refused {
            self.dead_letter(delivery, reason, "undecodable", 1, shutdown)
                .await?;
        }
        let written = self
            .commit(
                &batch.records,
                &batch.sources,
                &batch.ids,
                started,
                shutdown,
            )
            .await?;
        if self.settings.failpoint == Some(Failpoint::CrashAfterCommit) {
            tracing::warn!("failpoint crash-after-commit: aborting before evaluation and ack");
            std::process::abort();
        }
        Some(Committed {
            records: batch.records,
            ids: batch.ids,
            written,
            started,
        })
    }

    /// Finishes the committed batch, if there is one: its tenants' alerts
    /// evaluated against the committed totals, then its entries
    /// acknowledged. `None` if shutdown came while a step was failing: the
    /// entries stay pending, and whoever counts them again (nothing new)
    /// evaluates them again.
    #[tracing::instrument(name = "settle", skip_all)]
    async fn settle(&self, done: Option<Committed>, shutdown: &CancellationToken) -> Option<()> {
        let Some(done) = done else {
            return Some(());
        };
        // The whole batch, not only what this delivery counted: a batch
        // redelivered after a crash between COMMIT and here is evaluated now.
        let tenants = writer::tenants_of(&done.records);
        let alerts_fired = until_done("evaluate alerts", shutdown, || {
            alerts::rules::evaluate(&self.db, &tenants, chrono::Utc::now())
        })
        .await?;
        record_committed(&done.records, &done.written, alerts_fired);
        until_done("ack", shutdown, || self.consumer.ack(&done.ids)).await?;
        metrics::histogram!("flagmeter_batch_duration_seconds")
            .record(done.started.elapsed().as_secs_f64());
        tracing::debug!(
            entries = done.ids.len(),
            counted = done.written.counted,
            voided = done.written.voided,
            elapsed_ms = done.started.elapsed().as_millis() as u64,
            "batch settled"
        );
        Some(())
    }

    /// Sets an entry that can never be counted aside as a dead letter (in
    /// PostgreSQL, so that this works while Valkey is out of memory), before
    /// the caller acks it. `None` on shutdown while PostgreSQL fails.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        reason: &str,
        kind: &'static str,
        deliveries: usize,
        shutdown: &CancellationToken,
    ) -> Option<()> {
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
        until_done("dead letter", shutdown, || letter.write(&self.db)).await
    }
}

/// Per-batch metrics of a commit: counted, duplicates, voids, alerts, and
/// how long each event took from the api's receipt to this commit.
fn record_committed(records: &[EventRecord], written: &writer::Written, alerts_fired: u64) {
    metrics::counter!("flagmeter_events_counted_total").increment(written.counted);
    metrics::counter!("flagmeter_events_duplicate_total").increment(written.duplicates);
    metrics::counter!("flagmeter_events_voided_total").increment(written.voided);
    metrics::counter!("flagmeter_alerts_fired_total").increment(alerts_fired);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let lag = metrics::histogram!("flagmeter_end_to_end_lag_seconds");
    for record in records {
        lag.record((now_ms - record.received_ms).max(0) as f64 / 1000.0);
    }
}
