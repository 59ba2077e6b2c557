//! The stream's length, sampled in the background, so that ingest can refuse
//! (503 + `Retry-After`) once the stream holds more than the high-water mark
//! without paying a round trip per request.
//!
//! The sample is at most one interval old, so the stream can overshoot the
//! mark by one interval's worth of traffic; the mark protects Valkey's memory
//! while the pipeline is behind, it is not an exact quota.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::{AsyncCommands, aio::ConnectionManager};
use tokio_util::sync::CancellationToken;

/// How often the length is sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// The latest sampled length, shared with every request.
#[derive(Debug, Clone, Default)]
pub struct Backlog(Arc<AtomicU64>);

impl Backlog {
    pub fn entries(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Samples `XLEN` until shutdown. A failed sample keeps the last value:
    /// if Valkey is down, appends fail by themselves.
    pub async fn sample(
        self,
        mut valkey: ConnectionManager,
        stream: String,
        shutdown: CancellationToken,
    ) {
        loop {
            match valkey.xlen::<_, u64>(&stream).await {
                Ok(len) => {
                    self.0.store(len, Ordering::Relaxed);
                    metrics::gauge!("flagmeter_stream_length_entries").set(len as f64);
                }
                Err(err) => tracing::debug!(%err, "cannot sample the stream length"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(SAMPLE_INTERVAL) => {}
            }
        }
    }
}
