//! One clock for every api replica: the Valkey server's.
//!
//! An event sent without a timestamp takes its event time, and every event
//! its receipt time (`received_at`, on which the ledger's retention keys),
//! from the moment the api accepts it; a client's timestamp is checked
//! against that moment too (at most 35 days old, 5 minutes ahead). Taken
//! from each replica's own wall clock, a replica running minutes fast or
//! slow bills events near a period's edge to the wrong period, refuses an
//! accurate client's timestamp as "in the future", and, far behind, stamps
//! receipt times that retention takes for old, so that a retry of a row it
//! removed counts again.
//!
//! So every replica reads the time of the Valkey server it appends to
//! (`TIME`, the clock that also stamps stream entry ids), once before it
//! serves and then every few seconds, keeps the offset from its own clock
//! and adds it: reading the time stays free, and replicas agree to within
//! a round trip. Until a reading succeeds the offset is zero (this host's
//! clock). An offset over one second is reported, in the gauge
//! `flagmeter_clock_offset_seconds` and a warning in the log: FlagMeter no
//! longer depends on it, but the host's clock needs fixing.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use redis::RedisError;
use stream::Valkey;
use tokio_util::sync::CancellationToken;

/// How often the offset is measured again.
const SYNC_INTERVAL: Duration = Duration::from_secs(5);
/// An offset this large is reported.
const REPORTED_OFFSET: TimeDelta = TimeDelta::seconds(1);

/// The shared clock: this host's clock plus its measured offset from the
/// Valkey server's (in microseconds), shared with every request.
#[derive(Debug, Clone, Default)]
pub struct Clock(Arc<AtomicI64>);

impl Clock {
    /// Now, by the Valkey server's clock.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset()
    }

    fn offset(&self) -> TimeDelta {
        TimeDelta::microseconds(self.0.load(Ordering::Relaxed))
    }

    /// Measures the offset once; keeps the last one if Valkey does not
    /// answer.
    pub async fn sync_once(&self, valkey: &mut Valkey) {
        match measure(valkey).await {
            Ok(offset) => {
                let micros = offset.num_microseconds().unwrap_or(i64::MAX);
                self.0.store(micros, Ordering::Relaxed);
                self.report();
                if offset.abs() > REPORTED_OFFSET {
                    tracing::warn!(
                        offset_ms = offset.num_milliseconds(),
                        "this host's clock is off from Valkey's by more than a second; \
                         events are stamped by Valkey's clock"
                    );
                }
            }
            Err(err) => tracing::debug!(%err, "cannot read Valkey's clock"),
        }
    }

    fn report(&self) {
        metrics::gauge!("flagmeter_clock_offset_seconds")
            .set(self.0.load(Ordering::Relaxed) as f64 / 1e6);
    }

    /// Measures the offset every few seconds until shutdown (the first
    /// measurement was taken before the metrics recorder existed, so it is
    /// reported here).
    pub async fn sync(self, mut valkey: Valkey, shutdown: CancellationToken) {
        self.report();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(SYNC_INTERVAL) => {}
            }
            self.sync_once(&mut valkey).await;
        }
    }
}

/// The Valkey server's time minus this host's, taking the reply to have
/// been read at the middle of the round trip.
async fn measure(valkey: &mut Valkey) -> Result<TimeDelta, RedisError> {
    let sent = Utc::now();
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(valkey).await?;
    let received = Utc::now();
    let server =
        DateTime::from_timestamp(secs, 0).unwrap_or(sent) + TimeDelta::microseconds(micros);
    Ok(server - (sent + (received - sent) / 2))
}
