//! Retrying what must eventually succeed (a commit, an ack, a dead letter)
//! with capped, jittered exponential backoff, for as long as the process is
//! not shutting down.
//!
//! An attempt in flight is never cut short: only the sleep between attempts
//! races shutdown, so a batch whose commit is under way still finishes.

use std::{fmt::Display, future::Future, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// Longest pause between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

fn policy() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(MAX_DELAY)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Runs `op` until it succeeds (`Some`) or shutdown is requested while
/// waiting to try again (`None`). Every failure is logged as a warning:
/// nothing is lost while retrying, but an operator may want to know.
pub async fn until_done<T, E, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    mut op: F,
) -> Option<T>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delays = policy();
    loop {
        match op().await {
            Ok(value) => return Some(value),
            Err(err) => {
                let delay = delays.next().unwrap_or(MAX_DELAY);
                tracing::warn!(%err, retry_in = ?delay, "{what} failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
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
        assert_eq!(result, Some(4));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_waiting_when_shutdown_is_requested() {
        let shutdown = CancellationToken::new();
        let stopper = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            stopper.cancel();
        });
        let result: Option<()> =
            until_done("test", &shutdown, || async { Err::<(), _>("down") }).await;
        assert_eq!(result, None);
    }

    #[test]
    fn the_delay_is_capped() {
        assert!(policy().take(50).all(|d| d <= MAX_DELAY * 2));
    }
}
