//! The worker loop: read → decode → write → ack, until shutdown.
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
use tokio_util::sync::CancellationToken;

use crate::{
    consumer::{Consumer, Delivery},
    dead_letter,
    record::EventRecord,
    retry::until_done,
    stream::FIELD,
    writer,
};

/// Where an `XAUTOCLAIM` scan starts (and what it returns once complete).
const SCAN_START: &str = "0-0";

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
        let mut claim_cursor = SCAN_START.to_owned();
        // Look for orphaned entries at once: a restarted replica's predecessor
        // may have left some.
        let mut next_claim = Instant::now();
        while !shutdown.is_cancelled() {
            let batch = if Instant::now() >= next_claim {
                let Some((claimed, cursor)) = until_done("reclaim", &shutdown, || {
                    self.consumer.reclaim(&claim_cursor)
                })
                .await
                else {
                    break;
                };
                if cursor == SCAN_START {
                    next_claim = Instant::now() + self.settings.claim_interval;
                }
                claim_cursor = cursor;
                if !claimed.is_empty() {
                    tracing::info!(entries = claimed.len(), "took over pending entries");
                    metrics::counter!("flagmeter_events_reclaimed_total")
                        .increment(claimed.len() as u64);
                }
                let Some(claimed) = self.dead_letter_redelivered(claimed, &shutdown).await else {
                    break;
                };
                claimed
            } else {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    read = until_done("read", &shutdown, || self.consumer.read()) => match read {
                        Some(batch) => batch,
                        None => break,
                    },
                }
            };
            if !batch.is_empty() && self.process(batch, &shutdown).await.is_none() {
                break;
            }
        }
        tracing::info!(consumer = self.consumer.name(), "worker stopped");
    }

    /// Counts one batch and acknowledges it. `None` if shutdown came while a
    /// step was failing: the rest of the batch stays pending.
    #[tracing::instrument(name = "batch", skip_all, fields(entries = deliveries.len()))]
    async fn process(&self, deliveries: Vec<Delivery>, shutdown: &CancellationToken) -> Option<()> {
        let started = Instant::now();
        metrics::counter!("flagmeter_events_read_total").increment(deliveries.len() as u64);
        metrics::histogram!("flagmeter_batch_size_events").record(deliveries.len() as f64);
        // Decoded records and the entries they came from, index for index.
        let mut records = Vec::with_capacity(deliveries.len());
        let mut sources = Vec::with_capacity(deliveries.len());
        let mut ids = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let record = match &delivery.payload {
                Some(bytes) => EventRecord::decode(bytes).map_err(|err| err.to_string()),
                None => Err(format!("entry has no field '{FIELD}'")),
            };
            ids.push(delivery.id.clone());
            match record {
                Ok(record) => {
                    records.push(record);
                    sources.push(delivery);
                }
                Err(reason) => {
                    self.dead_letter(&delivery, &reason, "undecodable", 1, shutdown)
                        .await?
                }
            }
        }
        let written = self.commit(&records, &ids, started, shutdown).await?;
        let (counted, alerts_fired) = match written {
            Some(written) => (written.counted, written.alerts_fired),
            None => (
                self.commit_one_by_one(&sources, &records, shutdown).await?,
                0,
            ),
        };
        record_committed(&records, counted, alerts_fired);
        if self.settings.failpoint == Some(Failpoint::CrashAfterCommit) {
            tracing::warn!("failpoint crash-after-commit: aborting before the ack");
            std::process::abort();
        }
        until_done("ack", shutdown, || self.consumer.ack(&ids)).await?;
        metrics::histogram!("flagmeter_batch_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        tracing::debug!(
            entries = ids.len(),
            counted,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "batch committed"
        );
        Some(())
    }

    /// Commits the batch, retrying while PostgreSQL is unavailable (or
    /// read-only, shutting down, timing out: see [`writer::refused`]).
    /// `Some(None)` when PostgreSQL refuses the data of this batch: the
    /// caller then finds the entry it refuses.
    async fn commit(
        &self,
        records: &[EventRecord],
        ids: &[String],
        started: Instant,
        shutdown: &CancellationToken,
    ) -> Option<Option<writer::Written>> {
        until_done("commit", shutdown, || async {
            if started.elapsed() > self.settings.keep_fresh_after
                && let Err(err) = self.consumer.touch(ids).await
            {
                tracing::warn!(%err, "cannot keep the batch's entries fresh");
            }
            match writer::write_batch(&self.db, records, &self.settings.new_tenants).await {
                Ok(written) => Ok(Some(written)),
                Err(err) if writer::refused(&err) => {
                    tracing::warn!(%err, "PostgreSQL refuses the batch; committing its events one by one");
                    Ok(None)
                }
                Err(err) => {
                    metrics::counter!("flagmeter_transaction_retries_total").increment(1);
                    Err(err)
                }
            }
        })
        .await
    }

    /// Commits events one at a time, dead-lettering any whose data
    /// PostgreSQL refuses. Returns how many counted.
    async fn commit_one_by_one(
        &self,
        sources: &[Delivery],
        records: &[EventRecord],
        shutdown: &CancellationToken,
    ) -> Option<u64> {
        let mut counted = 0;
        for (delivery, record) in sources.iter().zip(records) {
            let outcome = until_done("commit one event", shutdown, || async {
                match writer::write_batch(
                    &self.db,
                    std::slice::from_ref(record),
                    &self.settings.new_tenants,
                )
                .await
                {
                    Ok(written) => Ok(Ok(written.counted)),
                    Err(err) if writer::refused(&err) => Ok(Err(err.to_string())),
                    Err(err) => Err(err),
                }
            })
            .await?;
            match outcome {
                Ok(n) => counted += n,
                Err(reason) => {
                    let reason = format!("PostgreSQL refused the event: {reason}");
                    self.dead_letter(delivery, &reason, "refused", 1, shutdown)
                        .await?;
                }
            }
        }
        Some(counted)
    }

    /// Dead-letters (and acks) the taken-over entries delivered more often
    /// than allowed; returns the others.
    async fn dead_letter_redelivered(
        &self,
        claimed: Vec<Delivery>,
        shutdown: &CancellationToken,
    ) -> Option<Vec<Delivery>> {
        if claimed.is_empty() {
            return Some(claimed);
        }
        let ids: Vec<String> = claimed.iter().map(|d| d.id.clone()).collect();
        let counts = until_done("read delivery counts", shutdown, || {
            self.consumer.delivery_counts(&ids)
        })
        .await?;
        let mut keep = Vec::with_capacity(claimed.len());
        let mut dead = Vec::new();
        for delivery in claimed {
            let count = counts.get(&delivery.id).copied().unwrap_or(1);
            if count > self.settings.max_deliveries {
                let reason = format!("delivered {count} times without being committed");
                self.dead_letter(&delivery, &reason, "redelivered", count, shutdown)
                    .await?;
                dead.push(delivery.id);
            } else {
                keep.push(delivery);
            }
        }
        until_done("ack", shutdown, || self.consumer.ack(&dead)).await?;
        Some(keep)
    }

    /// Sets an entry aside as a dead letter (in PostgreSQL, so that this
    /// works while Valkey is out of memory), retrying until it is stored.
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

/// Per-batch metrics of a commit: counted, duplicates, alerts, and how long
/// each event took from the api's receipt to this commit.
fn record_committed(records: &[EventRecord], counted: u64, alerts_fired: u64) {
    metrics::counter!("flagmeter_events_counted_total").increment(counted);
    metrics::counter!("flagmeter_events_duplicate_total")
        .increment((records.len() as u64).saturating_sub(counted));
    metrics::counter!("flagmeter_alerts_fired_total").increment(alerts_fired);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let lag = metrics::histogram!("flagmeter_end_to_end_lag_seconds");
    for record in records {
        lag.record((now_ms - record.received_ms).max(0) as f64 / 1000.0);
    }
}
