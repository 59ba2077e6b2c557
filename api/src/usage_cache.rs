//! A short-lived cache of tenants' period usage, so that a dashboard or
//! many clients polling the same tenant cost PostgreSQL a few queries a
//! second instead of two per request.
//!
//! Concurrent requests for a tenant share one query; an answer is reused for
//! the cache's lifetime (`FLAGMETER_USAGE_CACHE_MS`, default 250 ms; 0 turns
//! it off). The answer carries the time it was read, which the api reports
//! as `asOf`, so a cached figure never claims to be fresher than it is. An
//! unknown tenant is never cached: its first event makes it visible at once.
//! Failed queries are not cached either.

use std::{future::Future, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::DbErr;
use store::usage::PeriodUsage;

use crate::ttl_cache::TtlCache;

/// Usage as read at a moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub usage: PeriodUsage,
    pub read_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct UsageCache {
    cache: TtlCache<String, Option<Snapshot>>,
}

impl UsageCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            cache: TtlCache::new(ttl, Option::is_some),
        }
    }

    /// The tenant's usage: cached if read less than the lifetime ago, else
    /// read by `load` (once, however many requests ask at the same time).
    pub async fn get<F, Fut>(&self, tenant: &str, load: F) -> Result<Option<Snapshot>, DbErr>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<PeriodUsage>, DbErr>>,
    {
        self.cache
            .get(&tenant.to_owned(), || async {
                let read_at = Utc::now();
                Ok::<_, DbErr>(load().await?.map(|usage| Snapshot { usage, read_at }))
            })
            .await
    }
}
