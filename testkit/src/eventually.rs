//! Waiting for something that happens in the background (a pipeline
//! counting, an alert being sent), without timing assertions: poll until it
//! holds, and fail with what was last seen once a generous deadline passes.

use std::{fmt::Debug, future::Future, time::Duration};

/// How often [`eventually`] looks again.
const POLL: Duration = Duration::from_millis(50);

/// Polls `check` until it returns `Ok`, and returns that value; panics with
/// `what` and the last `Err` once `timeout` has passed.
pub async fn eventually<T, E, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    E: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: not so after {timeout:?}; last seen: {last:?}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}
