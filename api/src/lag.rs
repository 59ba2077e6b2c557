//! How far counted figures may trail what was accepted: the event time of
//! acceptance of the oldest stream entry the consumer group has not yet
//! counted, on any shard, sampled in the background so that the entitlement check
//! (`GET /api/usage/{tenant}/check`) costs no round trip for it.
//!
//! "Not yet counted" is the oldest entry that is pending (delivered, not
//! acknowledged: a worker is counting it, or died holding it) or, if none
//! is older, the first entry not yet delivered. Entry ids start with the
//! millisecond Valkey stored the entry at, which is when the api accepted
//! the event; the lag is that entry's age. An entry is acknowledged just
//! after its COMMIT, so the figure errs on the safe side by that moment.
//! The sample is at most one interval old plus a round trip.
//!
//! The same sample tells the limits ([`crate::limits`]) up to when
//! everything appended has been counted ([`Lag::counted_through_ms`]).

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use redis::{AsyncCommands, RedisError};
use stream::{EntryId, Shards, StreamKeys, Valkey};
use tokio_util::sync::CancellationToken;

/// How often the oldest uncounted entry is looked up.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// Stored when nothing waits.
const NONE_WAITING: i64 = i64::MAX;

/// When the oldest uncounted entry was accepted (ms since the epoch), or
/// `NONE_WAITING`, and when the last sample that succeeded began (0
/// before any), shared with every request.
#[derive(Debug, Clone)]
pub struct Lag {
    oldest: Arc<AtomicI64>,
    sampled: Arc<AtomicI64>,
}

impl Default for Lag {
    fn default() -> Self {
        Self {
            oldest: Arc::new(AtomicI64::new(NONE_WAITING)),
            sampled: Arc::new(AtomicI64::new(0)),
        }
    }
}

impl Lag {
    /// Milliseconds the oldest uncounted event has waited at `now_ms`; 0
    /// when none waits.
    pub fn ms(&self, now_ms: i64) -> u64 {
        match self.oldest.load(Ordering::Relaxed) {
            NONE_WAITING => 0,
            oldest => u64::try_from(now_ms - oldest).unwrap_or(0),
        }
    }

    /// A time (ms since the epoch) before which every entry appended to
    /// any shard has been counted (or dead-lettered): just before the
    /// oldest uncounted entry, or, when none waited, the start of the last
    /// sample. 0 before the first sample; never later than the truth.
    pub fn counted_through_ms(&self) -> i64 {
        // Read in this order: a sample stores `oldest` before `sampled`,
        // so `oldest` is at least as recent as the sample it is paired with.
        let sampled = self.sampled.load(Ordering::Acquire);
        match self.oldest.load(Ordering::Acquire) {
            NONE_WAITING => sampled,
            oldest => (oldest - 1).min(sampled),
        }
    }

    /// Samples until shutdown. A failed sample keeps the last value.
    pub async fn sample(self, mut valkey: Valkey, shards: Shards, shutdown: CancellationToken) {
        loop {
            let started = chrono::Utc::now().timestamp_millis();
            match oldest_of_all(&mut valkey, &shards).await {
                Ok(oldest) => {
                    self.oldest.store(
                        oldest.map_or(NONE_WAITING, |id| id.ms as i64),
                        Ordering::Release,
                    );
                    self.sampled.store(started, Ordering::Release);
                }
                Err(err) => tracing::debug!(%err, "cannot sample the pipeline's lag"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(SAMPLE_INTERVAL) => {}
            }
        }
    }
}

/// The oldest entry of any shard that its group has not counted, if any.
async fn oldest_of_all(conn: &mut Valkey, shards: &Shards) -> Result<Option<EntryId>, RedisError> {
    let mut oldest = None;
    for keys in shards.all() {
        if let Some(id) = oldest_uncounted(conn, keys).await? {
            oldest = Some(oldest.map_or(id, |o: EntryId| o.min(id)));
        }
    }
    Ok(oldest)
}

/// The oldest entry of one shard's stream the group has not counted, if any.
async fn oldest_uncounted(
    conn: &mut Valkey,
    keys: &StreamKeys,
) -> Result<Option<EntryId>, RedisError> {
    let groups: redis::streams::StreamInfoGroupsReply = conn.xinfo_groups(&keys.stream).await?;
    let Some(group) = groups.groups.into_iter().find(|g| g.name == keys.group) else {
        return Ok(None);
    };
    let mut oldest: Option<EntryId> = None;
    if group.pending > 0 {
        let pending: redis::streams::StreamPendingReply =
            conn.xpending(&keys.stream, &keys.group).await?;
        if let redis::streams::StreamPendingReply::Data(data) = pending {
            oldest = data.start_id.parse().ok();
        }
    }
    if group.lag != Some(0) {
        let next: redis::streams::StreamRangeReply = conn
            .xrange_count(
                &keys.stream,
                format!("({}", group.last_delivered_id),
                "+",
                1,
            )
            .await?;
        let undelivered = next.ids.first().and_then(|e| e.id.parse::<EntryId>().ok());
        oldest = match (oldest, undelivered) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(oldest)
}
