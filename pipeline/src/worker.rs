//! The worker loop: read → decode → write → ack, until shutdown.
//!
//! Each batch is committed before any of it is acknowledged, and every step
//! that must happen (dead letter, commit, ack) is retried until it does, so a
//! failure anywhere leaves entries pending rather than lost; the ledger makes
//! their redelivery harmless. Periodically the worker also takes over entries
//! that a crashed replica left pending.
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
    writer,
};

/// Where an `XAUTOCLAIM` scan starts (and what it returns once complete).
const SCAN_START: &str = "0-0";

/// One consumer-group member counting into PostgreSQL.
pub struct Worker {
    consumer: Consumer,
    db: DatabaseConnection,
    default_quota: i64,
    claim_interval: Duration,
}

impl Worker {
    pub fn new(
        consumer: Consumer,
        db: DatabaseConnection,
        default_quota: i64,
        claim_interval: Duration,
    ) -> Self {
        Self {
            consumer,
            db,
            default_quota,
            claim_interval,
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
                    next_claim = Instant::now() + self.claim_interval;
                }
                claim_cursor = cursor;
                if !claimed.is_empty() {
                    tracing::info!(entries = claimed.len(), "took over pending entries");
                }
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
    async fn process(&self, deliveries: Vec<Delivery>, shutdown: &CancellationToken) -> Option<()> {
        let started = Instant::now();
        let mut records = Vec::with_capacity(deliveries.len());
        let mut ids = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let decoded = match &delivery.payload {
                Some(bytes) => EventRecord::decode(bytes).map_err(|err| err.to_string()),
                None => Err(format!("entry has no field '{}'", crate::stream::FIELD)),
            };
            match decoded {
                Ok(record) => records.push(record),
                Err(reason) => self.dead_letter(&delivery, &reason, shutdown).await?,
            }
            ids.push(delivery.id);
        }
        let written = until_done("commit", shutdown, || {
            writer::write_batch(&self.db, &records, self.default_quota)
        })
        .await?;
        until_done("ack", shutdown, || self.consumer.ack(&ids)).await?;
        tracing::debug!(
            entries = ids.len(),
            counted = written.counted,
            duplicates = written.duplicates,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "batch committed"
        );
        Some(())
    }

    async fn dead_letter(
        &self,
        delivery: &Delivery,
        reason: &str,
        shutdown: &CancellationToken,
    ) -> Option<()> {
        tracing::warn!(entry = %delivery.id, reason, "moving undecodable entry to the dead-letter stream");
        let keys = self.consumer.keys();
        until_done("dead letter", shutdown, || async {
            dead_letter::write(
                &mut self.consumer.commands(),
                &keys.dead,
                delivery,
                reason,
                self.consumer.name(),
            )
            .await
        })
        .await
    }
}
