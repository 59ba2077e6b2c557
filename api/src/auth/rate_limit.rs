//! Rate limits per key (GCRA, from the governor crate): each key may make
//! `FLAGMETER_RATE_LIMIT_PER_SEC` requests a second on average, in bursts
//! of up to `FLAGMETER_RATE_LIMIT_BURST`; beyond that it gets a 429 with
//! `Retry-After`.
//!
//! A batch of events counts as one request: the body limit and the batch
//! size cap already bound what one request can cost, and a client batching
//! to go easy on the api should not be punished for it. The limit holds per
//! api replica (no shared state): with N replicas behind a balancer a key
//! gets up to N times the limit.

use std::{num::NonZeroU32, sync::Arc};

use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};
use uuid::Uuid;

use crate::error::ApiError;

#[derive(Clone)]
pub struct RateLimits(Arc<DefaultKeyedRateLimiter<Uuid>>);

impl RateLimits {
    /// Limits of `per_sec` requests a second with bursts of `burst` (one
    /// second's worth by default); `None` when `per_sec` is 0 (no limit).
    pub fn new(per_sec: u32, burst: Option<u32>) -> Option<Self> {
        let rate = NonZeroU32::new(per_sec)?;
        let burst = burst.and_then(NonZeroU32::new).unwrap_or(rate);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Some(Self(Arc::new(DefaultKeyedRateLimiter::keyed(quota))))
    }

    /// Counts one request of `key`; a 429 if it is over its limit.
    pub fn check(&self, key: Uuid) -> Result<(), ApiError> {
        self.0.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.0.clock().now());
            ApiError::too_many_requests(wait.as_secs_f64().ceil().max(1.0) as u64)
        })
    }
}
