//! A short-lived cache of tenants' period usage, so that a dashboard or
//! many clients polling the same tenant cost PostgreSQL a few queries a
//! second instead of two per request.
//!
//! Concurrent requests for a tenant share one query (the first one runs it,
//! the others wait for its answer); an answer is reused for the cache's
//! lifetime (`FLAGMETER_USAGE_CACHE_MS`, default 250 ms; 0 turns it off).
//! The answer carries the time it was read, which the api reports as
//! `asOf`, so a cached figure never claims to be fresher than it is. An
//! unknown tenant is never cached: its first event makes it visible at once.
//! Failed queries are not cached either.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use entity::usage::PeriodUsage;
use sea_orm::DbErr;
use tokio::sync::OnceCell;

/// Usage as read at a moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub usage: PeriodUsage,
    pub read_at: DateTime<Utc>,
}

type Slot = Arc<OnceCell<Option<Snapshot>>>;

/// Most entries kept before expired ones are swept.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Clone)]
pub struct UsageCache {
    ttl: Duration,
    slots: Arc<Mutex<HashMap<String, (Instant, Slot)>>>,
}

impl UsageCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            slots: Arc::default(),
        }
    }

    /// The tenant's usage: cached if read less than the lifetime ago, else
    /// read by `load` (once, however many requests ask at the same time).
    pub async fn get<F, Fut>(&self, tenant: &str, load: F) -> Result<Option<Snapshot>, DbErr>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<PeriodUsage>, DbErr>>,
    {
        if self.ttl.is_zero() {
            return Ok(load().await?.map(|usage| Snapshot {
                usage,
                read_at: Utc::now(),
            }));
        }
        let slot = self.slot(tenant);
        let snapshot = slot
            .get_or_try_init(|| async {
                let read_at = Utc::now();
                Ok::<_, DbErr>(load().await?.map(|usage| Snapshot { usage, read_at }))
            })
            .await?
            .clone();
        if snapshot.is_none() {
            self.forget(tenant, &slot);
        }
        Ok(snapshot)
    }

    fn slot(&self, tenant: &str) -> Slot {
        // A poisoned lock only means another request panicked mid-insert;
        // the map itself is still sound.
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((created, slot)) = slots.get(tenant)
            && created.elapsed() < self.ttl
        {
            return slot.clone();
        }
        if slots.len() > SWEEP_ABOVE {
            let ttl = self.ttl;
            slots.retain(|_, (created, _)| created.elapsed() < ttl);
        }
        let slot = Slot::default();
        slots.insert(tenant.to_owned(), (Instant::now(), slot.clone()));
        slot
    }

    fn forget(&self, tenant: &str, slot: &Slot) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.get(tenant).is_some_and(|(_, s)| Arc::ptr_eq(s, slot)) {
            slots.remove(tenant);
        }
    }
}
