//! The live progress line: about once a second on stderr, so that a long
//! run shows how it is going (and stdout keeps only the summary).

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::stats::Stats;

/// Prints elapsed time, achieved requests per second over the last second,
/// P99 so far and errors so far, until `stop` is cancelled.
pub async fn report(stats: &Stats, start: Instant, stop: CancellationToken) {
    let every = Duration::from_secs(1);
    let mut ticks = tokio::time::interval_at(start + every, every);
    let (mut last_count, mut last_at) = (0, start);
    loop {
        let at = tokio::select! {
            () = stop.cancelled() => return,
            at = ticks.tick() => at,
        };
        let count = stats.completed();
        let rate = (count - last_count) as f64 / (at - last_at).as_secs_f64();
        (last_count, last_at) = (count, at);
        eprintln!(
            "{:>7.1}s {rate:>9.0} req/s  p99 {:>9.2} ms  errors {}",
            (at - start).as_secs_f64(),
            stats.p99_ms(),
            stats.errors(),
        );
    }
}
