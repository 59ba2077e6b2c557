//! The other source of batches: entries a crashed or stuck replica left
//! pending, taken over once they have been idle longer than the claim idle
//! time. An entry delivered more often than allowed (it kills every worker
//! that reads it) is dead-lettered instead of being tried again.

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::{
    consumer::Delivery,
    retry::{Stopped, until_done},
};

/// Where an `XAUTOCLAIM` scan starts (and what it returns once complete).
pub(super) const SCAN_START: &str = "0-0";

/// Where the worker is in its periodic scan of the pending entries.
pub(super) struct ReclaimScan {
    cursor: String,
    next: Instant,
}

impl ReclaimScan {
    /// A scan due at once: a restarted replica's predecessor may have left
    /// entries pending.
    pub(super) fn due_now() -> Self {
        Self {
            cursor: SCAN_START.to_owned(),
            next: Instant::now(),
        }
    }

    pub(super) fn is_due(&self) -> bool {
        Instant::now() >= self.next
    }
}

impl Worker {
    /// Takes over up to one batch of idle pending entries and returns those
    /// still worth counting.
    pub(super) async fn reclaim(
        &self,
        scan: &mut ReclaimScan,
        shutdown: &CancellationToken,
    ) -> Result<Vec<Delivery>, Stopped> {
        let (claimed, cursor) =
            until_done("reclaim", shutdown, || self.consumer.reclaim(&scan.cursor)).await?;
        if cursor == SCAN_START {
            scan.next = Instant::now() + self.settings.claim_interval;
        }
        scan.cursor = cursor;
        if !claimed.is_empty() {
            tracing::info!(entries = claimed.len(), "took over pending entries");
            metrics::counter!("flagmeter_events_reclaimed_total").increment(claimed.len() as u64);
        }
        self.dead_letter_redelivered(claimed, shutdown).await
    }

    /// Dead-letters (and acks) the taken-over entries delivered more often
    /// than allowed; returns the others.
    async fn dead_letter_redelivered(
        &self,
        claimed: Vec<Delivery>,
        shutdown: &CancellationToken,
    ) -> Result<Vec<Delivery>, Stopped> {
        if claimed.is_empty() {
            return Ok(claimed);
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
        Ok(keep)
    }
}
