//! Step two of a batch: its records counted in PostgreSQL, retried while
//! PostgreSQL is unavailable (or silent: each attempt is bounded by
//! `TransactionBounds::answered`).
//!
//! When PostgreSQL refuses the data of the batch (an event breaks a
//! constraint the codec cannot know of: [`writer::refused`]), the batch is
//! split and its events are committed one by one, so that only the refused
//! ones are dead-lettered and the rest still count. Both paths keep the
//! batch's entries fresh while they take long, so that no other replica
//! takes live work over.

use stream::EventRecord;
use tokio_util::sync::CancellationToken;

use super::{Worker, decode::Batch};
use crate::{
    retry::{Stopped, until_done},
    writer::{self, Written},
};

/// What PostgreSQL made of records it answered for.
enum Commit {
    /// Committed; what they did.
    Done(Written),
    /// Refused for their data, which no retry changes; the reason.
    Refused(String),
}

impl Worker {
    /// Commits the batch's records and returns what they did, dead-lettering
    /// those PostgreSQL refuses.
    pub(super) async fn commit(
        &self,
        batch: &Batch,
        shutdown: &CancellationToken,
    ) -> Result<Written, Stopped> {
        match self
            .commit_records("commit", batch.records(), batch, shutdown)
            .await?
        {
            Commit::Done(written) => Ok(written),
            Commit::Refused(reason) => {
                tracing::warn!(
                    reason,
                    "PostgreSQL refuses the batch; committing its events one by one"
                );
                self.commit_one_by_one(batch, shutdown).await
            }
        }
    }

    /// Commits the batch's events one at a time, dead-lettering any that
    /// PostgreSQL refuses while it is otherwise answering.
    async fn commit_one_by_one(
        &self,
        batch: &Batch,
        shutdown: &CancellationToken,
    ) -> Result<Written, Stopped> {
        let mut total = Written::default();
        for (delivery, record) in batch.counted() {
            let one = std::slice::from_ref(record);
            match self
                .commit_records("commit one event", one, batch, shutdown)
                .await?
            {
                Commit::Done(written) => total += written,
                Commit::Refused(reason) => {
                    let reason = format!("PostgreSQL refused the event: {reason}");
                    self.dead_letter(delivery, &reason, "refused", 1, shutdown)
                        .await?;
                }
            }
        }
        Ok(total)
    }

    /// Commits `records` (of `batch`), trying again while PostgreSQL is
    /// unavailable, read-only, shutting down, timing out or silent, until
    /// it commits them or refuses their data.
    async fn commit_records(
        &self,
        what: &str,
        records: &[EventRecord],
        batch: &Batch,
        shutdown: &CancellationToken,
    ) -> Result<Commit, Stopped> {
        until_done(what, shutdown, || async {
            self.keep_fresh(batch).await;
            let write = writer::write_batch(&self.db, records, &self.settings.new_tenants);
            match self.settings.db_bounds.answered(write).await {
                Ok(written) => Ok(Commit::Done(written)),
                Err(err) if writer::refused(&err) => Ok(Commit::Refused(err.to_string())),
                Err(err) => {
                    metrics::counter!("flagmeter_transaction_retries_total").increment(1);
                    Err(err)
                }
            }
        })
        .await
    }

    /// Resets the idle time of the batch's entries once it has been in hand
    /// for a while, so that a slow but live replica keeps its work.
    async fn keep_fresh(&self, batch: &Batch) {
        if batch.read_at().elapsed() > self.settings.keep_fresh_after
            && let Err(err) = self.consumer.touch(batch.ids()).await
        {
            tracing::warn!(%err, "cannot keep the batch's entries fresh");
        }
    }
}
