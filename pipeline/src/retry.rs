//! Retrying what must eventually succeed (a commit, an ack, a dead letter)
//! with capped, jittered exponential backoff, for as long as the process is
//! not shutting down.
//!
//! An attempt in flight is not cut short by shutdown: only the sleep between
//! attempts races it, so a batch whose commit is under way still finishes
//! (within the grace a stopping replica gives it, `crate::app`). Every
//! attempt is bounded on its own: Valkey commands by their reply timeout
//! (`stream::connection`), PostgreSQL steps by
//! `runtime::config::TransactionBounds::answered`; one that times out fails
//! like a lost connection and is retried here.
//!
//! Every error a dependency can answer is retried here until it clears, so
//! the pipeline recovers by itself once the dependency is healthy again:
//!
//! - Valkey `OOM` (at `maxmemory`): only writes that add data are refused;
//!   reading, acking and trimming, which free memory, go on, a replica joins
//!   a group that exists ([`stream::ensure_group`]), and dead letters
//!   go to PostgreSQL. Tested in `system-tests/tests/faults/recovery.rs`.
//! - Valkey `READONLY` (a replica, after a failover, until the client
//!   reconnects to the new primary), `MASTERDOWN` (a replica cut off from
//!   its primary), `LOADING` (a restart reading its AOF), `BUSY` (a script
//!   running long), `MISCONF` (a failing snapshot stops writes) and
//!   timeouts: each is an error reply or a lost connection on a command in
//!   one of these loops; the connection reconnects (and in a cluster
//!   follows MOVED and the new topology, see [`stream::Valkey`]), and nothing is
//!   acked before it succeeds. A connection that answers nothing at all
//!   (half-open) times out and is replaced. Killing Valkey mid-load is tested in
//!   `system-tests/tests/faults/main.rs`.
//! - PostgreSQL read-only (`25006`), shutting down (`57P01`..`57P03`),
//!   refusing connections, statement or lock timeouts (`57014`, `55P03`),
//!   serialization failures and deadlocks: the state of the database, not
//!   of the events, so the commit is retried and nothing is dead-lettered
//!   ([`crate::writer::refused`]). Tested: read-only in
//!   `pipeline/tests/faults.rs`, a crash and a long outage in
//!   `system-tests/tests/faults/main.rs`, a frozen session in `recovery.rs`.
//!
//! At start-up, joining the consumer group is retried the same way; an
//! unreachable PostgreSQL at start-up ends the process instead (its
//! supervisor restarts it), so that a wrong `DATABASE_URL` is seen at once.

use std::{fmt::Display, future::Future, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// Longest pause between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// The pauses between attempts: from 50–100 ms, doubling, up to 2.5–5 s.
///
/// backon's jitter adds a random share of up to the whole delay on top of
/// it, so the exponential part is capped at half of [`MAX_DELAY`] for the
/// sum to stay within it. Its random generator is seeded per process (the
/// crate's `std` feature), so replicas do not retry in lockstep.
fn policy() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(MAX_DELAY / 2)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Shutdown came while a step was failing: the step was given up, and
/// whatever it was for stays pending (in the stream), for this replica
/// restarted or another to finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// Runs `op` until it succeeds, or until shutdown is requested while
/// waiting to try again ([`Stopped`]). Every failure is logged as a warning:
/// nothing is lost while retrying, but an operator may want to know.
pub async fn until_done<T, E, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    mut op: F,
) -> Result<T, Stopped>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delays = policy();
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(err) => {
                let delay = delays.next().unwrap_or(MAX_DELAY);
                tracing::warn!(%err, retry_in = ?delay, "{what} failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(Stopped),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test(start_paused = true)]
    async fn retries_until_the_operation_succeeds() {
        let attempts = Cell::new(0);
        let shutdown = CancellationToken::new();
        let result = until_done("test", &shutdown, || {
            attempts.set(attempts.get() + 1);
            let n = attempts.get();
            async move { if n < 4 { Err("not yet") } else { Ok(n) } }
        })
        .await;
        assert_eq!(result, Ok(4));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_waiting_when_shutdown_is_requested() {
        let shutdown = CancellationToken::new();
        let stopper = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            stopper.cancel();
        });
        let result = until_done("test", &shutdown, || async { Err::<(), _>("down") }).await;
        assert_eq!(result, Err(Stopped));
    }

    #[test]
    fn the_delay_is_capped() {
        let delays: Vec<Duration> = policy().take(50).collect();
        assert!(delays.iter().all(|&d| d <= MAX_DELAY), "{delays:?}");
        assert!(
            delays[40..].iter().all(|&d| d >= MAX_DELAY / 2),
            "{delays:?}"
        );
    }

    #[test]
    fn each_policy_draws_its_own_jitter() {
        let first: Vec<Duration> = policy().take(10).collect();
        let second: Vec<Duration> = policy().take(10).collect();
        assert_ne!(first, second, "two retry loops wait in lockstep");
    }
}
