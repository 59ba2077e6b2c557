//! A small cache of answers that are expensive to read and fine to reuse
//! for a short while: concurrent requests for the same key share one load
//! (the first runs it, the others wait for its answer), and an answer is
//! reused until its lifetime ends. Failed loads are never cached; a
//! successful answer is cached only if the cache's `keep` rule says so.
//!
//! Used for tenants' usage ([`crate::usage_cache`]) and for API keys
//! ([`crate::auth`]).

use std::{
    collections::HashMap,
    future::Future,
    hash::Hash,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::OnceCell;

type Slot<V> = Arc<OnceCell<V>>;
/// Each key's answer (or the load under way) and when it was started.
type Slots<K, V> = HashMap<K, (Instant, Slot<V>)>;

/// Most entries kept before expired ones are swept.
const SWEEP_ABOVE: usize = 10_000;

pub struct TtlCache<K, V> {
    ttl: Duration,
    keep: fn(&V) -> bool,
    slots: Arc<Mutex<Slots<K, V>>>,
}

impl<K, V> Clone for TtlCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            ttl: self.ttl,
            keep: self.keep,
            slots: self.slots.clone(),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    /// A cache whose answers live for `ttl` (zero: every call loads), and
    /// which keeps only the answers `keep` accepts.
    pub fn new(ttl: Duration, keep: fn(&V) -> bool) -> Self {
        Self {
            ttl,
            keep,
            slots: Arc::default(),
        }
    }

    /// The answer for `key`: cached if loaded less than the lifetime ago,
    /// else loaded by `load` (once, however many callers ask at once).
    pub async fn get<F, Fut, E>(&self, key: &K, load: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if self.ttl.is_zero() {
            return load().await;
        }
        let slot = self.slot(key);
        let value = slot.get_or_try_init(load).await?.clone();
        if !(self.keep)(&value) {
            self.remove_if(key, |s| Arc::ptr_eq(s, &slot));
        }
        Ok(value)
    }

    /// Drops the answer for `key`, so that the next call loads it again.
    pub fn forget(&self, key: &K) {
        self.remove_if(key, |_| true);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots<K, V>> {
        // A poisoned lock only means another caller panicked mid-insert; the
        // map itself is still sound.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot(&self, key: &K) -> Slot<V> {
        let mut slots = self.lock();
        if let Some((created, slot)) = slots.get(key)
            && created.elapsed() < self.ttl
        {
            return slot.clone();
        }
        if slots.len() > SWEEP_ABOVE {
            let ttl = self.ttl;
            slots.retain(|_, (created, _)| created.elapsed() < ttl);
        }
        let slot = Slot::default();
        slots.insert(key.clone(), (Instant::now(), slot.clone()));
        slot
    }

    fn remove_if(&self, key: &K, matches: impl FnOnce(&Slot<V>) -> bool) {
        let mut slots = self.lock();
        if slots.get(key).is_some_and(|(_, s)| matches(s)) {
            slots.remove(key);
        }
    }
}
