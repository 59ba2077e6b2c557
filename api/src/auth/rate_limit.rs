//! Rate limits per key (GCRA, from the governor crate): each key may make
//! `FLAGMETER_RATE_LIMIT_PER_SEC` requests a second on average, in bursts
//! of up to `FLAGMETER_RATE_LIMIT_BURST`; beyond that it gets a 429 with
//! `Retry-After`.
//!
//! A batch of events costs one per event (a batch larger than the burst
//! costs the whole burst, so it fits a full bucket): events are what fill
//! the shared stream, and a key, say a customer's, must not be able to fill
//! it for everyone by batching. Every request pays one at authentication,
//! whatever becomes of it, so a client hammering refused requests is
//! limited too; a batch pays the rest of its cost once its size is known. The limit holds per api replica (no shared state): with N
//! replicas behind a balancer a key gets up to N times the limit.

use std::{num::NonZeroU32, sync::Arc};

use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};
use uuid::Uuid;

use crate::error::ApiError;

#[derive(Clone)]
pub struct RateLimits {
    limiter: Arc<DefaultKeyedRateLimiter<Uuid>>,
    burst: NonZeroU32,
}

impl RateLimits {
    /// Limits of `per_sec` requests a second with bursts of `burst` (one
    /// second's worth by default); `None` when `per_sec` is 0 (no limit).
    pub fn new(per_sec: u32, burst: Option<u32>) -> Option<Self> {
        let rate = NonZeroU32::new(per_sec)?;
        let burst = burst.and_then(NonZeroU32::new).unwrap_or(rate);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Some(Self {
            limiter: Arc::new(DefaultKeyedRateLimiter::keyed(quota)),
            burst,
        })
    }

    /// Counts one request of `key`; a 429 if it is over its limit.
    pub fn check(&self, key: Uuid) -> Result<(), ApiError> {
        self.take(key, NonZeroU32::MIN)
    }

    /// Counts the rest of a batch of `events` whose request paid one at
    /// authentication: one per event, at most the whole burst. A refusal's
    /// `Retry-After` is the wait for the whole cost, so that a client which
    /// waits that long gets its retry (which pays one at authentication
    /// again) through.
    pub fn check_batch(&self, key: Uuid, events: u32) -> Result<(), ApiError> {
        let cost = NonZeroU32::new(events).map_or(NonZeroU32::MIN, |n| n.min(self.burst));
        let Some(rest) = NonZeroU32::new(cost.get() - 1) else {
            return Ok(());
        };
        match self.take(key, rest) {
            Ok(()) => Ok(()),
            // Asking for more than was just refused is refused as well,
            // and says how long the whole cost takes to free up (were it
            // free after all, the batch has paid in full: let it through).
            Err(_) => self.take(key, cost),
        }
    }

    fn take(&self, key: Uuid, cost: NonZeroU32) -> Result<(), ApiError> {
        match self.limiter.check_key_n(&key, cost) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                Err(ApiError::too_many_requests(
                    wait.as_secs_f64().ceil().max(1.0) as u64,
                ))
            }
            // Cannot happen: the cost is capped at the burst.
            Err(_) => Err(ApiError::too_many_requests(1)),
        }
    }
}
