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
//!
//! The entitlement check, which sits in front of every model call, must not
//! wait for a query at all: [`UsageCache::get_or_stale`] answers with the
//! tenant's last figures for up to `STALE_LIFETIMES` lifetimes while one
//! background task reads them again (its `asOf` says how old they are).

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};
use store::usage::{PeriodUsage, tenant_usage};

use crate::ttl_cache::TtlCache;

/// How many lifetimes old the figures a check answers with may be.
const STALE_LIFETIMES: u32 = 4;

/// Usage as read at a moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub usage: PeriodUsage,
    pub read_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct UsageCache {
    cache: TtlCache<String, Option<Snapshot>>,
    /// Each known tenant's latest figures (bounded by the tenants that
    /// exist: unknown tenants are never stored).
    latest: Arc<Mutex<HashMap<String, Snapshot>>>,
}

impl UsageCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            cache: TtlCache::new(ttl, Option::is_some),
            latest: Arc::default(),
        }
    }

    /// The tenant's usage: cached if read less than the lifetime ago, else
    /// read by `load` (once, however many requests ask at the same time).
    pub async fn get<F, Fut>(&self, tenant: &str, load: F) -> Result<Option<Snapshot>, DbErr>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<PeriodUsage>, DbErr>>,
    {
        let snapshot = self
            .cache
            .get(&tenant.to_owned(), || async {
                let read_at = Utc::now();
                Ok::<_, DbErr>(load().await?.map(|usage| Snapshot { usage, read_at }))
            })
            .await?;
        if let Some(snapshot) = &snapshot {
            let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
            let newer = latest
                .get(tenant)
                .is_none_or(|known| known.read_at < snapshot.read_at);
            if newer {
                latest.insert(tenant.to_owned(), snapshot.clone());
            }
        }
        Ok(snapshot)
    }

    /// The tenant's usage without waiting for PostgreSQL when figures at
    /// most `STALE_LIFETIMES` lifetimes old are at hand: those that are
    /// past one lifetime are read again in the background.
    pub async fn get_or_stale(
        &self,
        tenant: &str,
        db: &DatabaseConnection,
    ) -> Result<Option<Snapshot>, DbErr> {
        let ttl = self.cache.ttl();
        let known = self
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .cloned();
        if let Some(known) = known {
            let age = (Utc::now() - known.read_at).to_std().unwrap_or_default();
            if age < ttl * STALE_LIFETIMES {
                if age >= ttl {
                    let (cache, db, tenant) = (self.clone(), db.clone(), tenant.to_owned());
                    tokio::spawn(async move {
                        let read = cache.get(&tenant, || tenant_usage(&db, &tenant, Utc::now()));
                        if let Err(err) = read.await {
                            tracing::warn!(%err, tenant, "cannot read the tenant's usage again");
                        }
                    });
                }
                return Ok(Some(known));
            }
        }
        self.get(tenant, || tenant_usage(db, tenant, Utc::now()))
            .await
    }
}
