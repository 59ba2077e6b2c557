//! Step two of a batch: its records counted in PostgreSQL, retried while
//! PostgreSQL is unavailable.
//!
//! When PostgreSQL refuses the data of the batch (an event breaks a
//! constraint the codec cannot know of: [`writer::refused`]), the batch is
//! split and its events
//! are committed one by one, so that only the refused ones are
//! dead-lettered and the rest still count. Both paths keep the batch's
//! entries fresh while they take long, so that no other replica takes
//! live work over.

use std::time::Instant;

use stream::EventRecord;
use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::{
    consumer::Delivery,
    retry::until_done,
    writer::{self, Written},
};

impl Worker {
    /// Commits `records` (their entries are `sources`; `ids` is the whole
    /// batch) and returns what it did. `None` if shutdown came while a step
    /// was failing.
    pub(super) async fn commit(
        &self,
        records: &[EventRecord],
        sources: &[Delivery],
        ids: &[String],
        started: Instant,
        shutdown: &CancellationToken,
    ) -> Option<Written> {
        match self.commit_whole(records, ids, started, shutdown).await? {
            Some(committed) => Some(committed),
            None => {
                self.commit_one_by_one(sources, records, ids, started, shutdown)
                    .await
            }
        }
    }

    /// Retries while PostgreSQL is unavailable (or read-only, shutting down,
    /// timing out: see [`writer::refused`]); `Some(None)` when PostgreSQL
    /// refuses the data of this batch.
    async fn commit_whole(
        &self,
        records: &[EventRecord],
        ids: &[String],
        started: Instant,
        shutdown: &CancellationToken,
    ) -> Option<Option<Written>> {
        until_done("commit", shutdown, || async {
            self.keep_fresh(ids, started).await;
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

    /// Commits events one at a time, dead-lettering any that PostgreSQL
    /// refuses while it is otherwise answering.
    async fn commit_one_by_one(
        &self,
        sources: &[Delivery],
        records: &[EventRecord],
        ids: &[String],
        started: Instant,
        shutdown: &CancellationToken,
    ) -> Option<Written> {
        let mut total = Written::default();
        for (delivery, record) in sources.iter().zip(records) {
            let outcome = until_done("commit one event", shutdown, || async {
                self.keep_fresh(ids, started).await;
                let one = std::slice::from_ref(record);
                match writer::write_batch(&self.db, one, &self.settings.new_tenants).await {
                    Ok(written) => Ok(Ok(written)),
                    Err(err) if writer::refused(&err) => Ok(Err(err.to_string())),
                    Err(err) => Err(err),
                }
            })
            .await?;
            match outcome {
                Ok(written) => total += written,
                Err(reason) => {
                    let reason = format!("PostgreSQL refused the event: {reason}");
                    self.dead_letter(delivery, &reason, "refused", 1, shutdown)
                        .await?;
                }
            }
        }
        Some(total)
    }

    /// Resets the idle time of the batch's entries once it has been in hand
    /// for a while, so that a slow but live replica keeps its work.
    async fn keep_fresh(&self, ids: &[String], started: Instant) {
        if started.elapsed() > self.settings.keep_fresh_after
            && let Err(err) = self.consumer.touch(ids).await
        {
            tracing::warn!(%err, "cannot keep the batch's entries fresh");
        }
    }
}
