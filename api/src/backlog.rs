//! Each shard's length, sampled in the background, so that ingest can refuse
//! (503 + `Retry-After`) once a shard holds more than the high-water mark
//! without paying a round trip per request, and send events to the shards
//! that still have room.
//!
//! The sample is at most one interval old, so a shard can overshoot the
//! mark by one interval's worth of traffic; the mark protects Valkey's memory
//! while the pipeline is behind, it is not an exact quota.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use redis::AsyncCommands;
use stream::{Shards, Valkey};
use tokio_util::sync::CancellationToken;

/// How often the lengths are sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// The latest sampled length of each shard, shared with every request.
#[derive(Debug, Clone)]
pub struct Backlog {
    lengths: Arc<[AtomicU64]>,
    /// Where the next request starts looking for a shard: requests take
    /// turns, so that one hot tenant is spread over every shard.
    next: Arc<AtomicUsize>,
}

impl Backlog {
    /// Nothing sampled yet: every shard taken as empty.
    pub fn new(shards: usize) -> Self {
        Self {
            lengths: (0..shards.max(1)).map(|_| AtomicU64::new(0)).collect(),
            next: Arc::default(),
        }
    }

    /// Shard `shard`'s latest sampled length.
    pub fn entries(&self, shard: usize) -> u64 {
        self.lengths[shard].load(Ordering::Relaxed)
    }

    /// The shard the next request goes to: the next in turn that is below
    /// `high_water`, or `None` when every shard is at or above it.
    pub fn shard_with_room(&self, high_water: u64) -> Option<usize> {
        let count = self.lengths.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| (start + offset) % count)
            .find(|&shard| self.entries(shard) < high_water)
    }

    /// Samples every shard's `XLEN` until shutdown. A failed sample keeps
    /// the last value: if Valkey is down, appends fail by themselves.
    pub async fn sample(self, mut valkey: Valkey, shards: Shards, shutdown: CancellationToken) {
        loop {
            for (shard, keys) in shards.all().iter().enumerate() {
                match valkey.xlen::<_, u64>(&keys.stream).await {
                    Ok(len) => {
                        self.lengths[shard].store(len, Ordering::Relaxed);
                        metrics::gauge!("flagmeter_stream_length_entries", "shard" => shard.to_string())
                            .set(len as f64);
                    }
                    Err(err) => tracing::debug!(%err, shard, "cannot sample the stream length"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(SAMPLE_INTERVAL) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_take_turns_and_skip_full_shards() {
        let backlog = Backlog::new(3);
        let turns: Vec<_> = (0..4).map(|_| backlog.shard_with_room(10)).collect();
        assert_eq!(turns, [Some(0), Some(1), Some(2), Some(0)]);
        backlog.lengths[2].store(10, Ordering::Relaxed);
        let turns: Vec<_> = (0..3).map(|_| backlog.shard_with_room(10)).collect();
        assert_eq!(turns, [Some(1), Some(0), Some(0)]);
        backlog.lengths[0].store(11, Ordering::Relaxed);
        backlog.lengths[1].store(10, Ordering::Relaxed);
        assert_eq!(backlog.shard_with_room(10), None);
    }
}
