//! A small cache of answers that are expensive to read and fine to reuse
//! for a short while: concurrent requests for the same key share one load
//! (the first runs it, the others wait for its answer), and an answer is
//! reused until its lifetime ends. Failed loads are never cached (a cache
//! made [`TtlCache::stale_if_error`] answers them with the key's previous
//! answer instead); a successful answer is cached only if the cache's
//! `keep` rule says so.
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

/// One key's answer, or the load under way.
struct Entry<V> {
    created: Instant,
    slot: Slot<V>,
    /// The answer before this one, for a cache that serves it when loading
    /// fails.
    stale: Option<V>,
}

/// Entries above which expired ones are swept (at most once a lifetime).
const SWEEP_ABOVE: usize = 10_000;
/// Entries above which new answers are not cached at all, so that a flood
/// of distinct keys (say, guessed API keys) cannot grow the map further.
const MAX_ENTRIES: usize = 100_000;

pub struct TtlCache<K, V> {
    ttl: Duration,
    keep: fn(&V) -> bool,
    stale_if_error: bool,
    entries: Arc<Mutex<Entries<K, V>>>,
}

struct Entries<K, V> {
    map: HashMap<K, Entry<V>>,
    swept: Instant,
}

impl<K, V> Clone for TtlCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            ttl: self.ttl,
            keep: self.keep,
            stale_if_error: self.stale_if_error,
            entries: self.entries.clone(),
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
            stale_if_error: false,
            entries: Arc::new(Mutex::new(Entries {
                map: HashMap::new(),
                swept: Instant::now(),
            })),
        }
    }

    /// Makes a failed load answer with the key's previous answer, if there
    /// is one, and keep it for another lifetime: for answers that stay true
    /// while their source is unreachable.
    pub fn stale_if_error(mut self) -> Self {
        self.stale_if_error = true;
        self
    }

    /// How long an answer is reused.
    pub fn ttl(&self) -> Duration {
        self.ttl
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
        let (slot, stale) = self.slot(key);
        let value = match slot.get_or_try_init(load).await {
            Ok(value) => value.clone(),
            Err(err) => match stale.filter(|_| self.stale_if_error) {
                Some(stale) => {
                    // Another caller may have succeeded meanwhile: keep theirs.
                    let _ = slot.set(stale.clone());
                    slot.get().cloned().unwrap_or(stale)
                }
                None => return Err(err),
            },
        };
        if !(self.keep)(&value) {
            self.remove_if(key, |s| Arc::ptr_eq(s, &slot));
        }
        Ok(value)
    }

    /// Drops the answer for `key`, so that the next call loads it again.
    pub fn forget(&self, key: &K) {
        self.remove_if(key, |_| true);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<K, V>> {
        // A poisoned lock only means another caller panicked mid-insert; the
        // map itself is still sound.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slot holding (or about to hold) the key's answer, and the answer
    /// before it.
    fn slot(&self, key: &K) -> (Slot<V>, Option<V>) {
        let mut entries = self.lock();
        let ttl = self.ttl;
        let stale = match entries.map.get(key) {
            Some(entry) if entry.created.elapsed() < ttl => {
                return (entry.slot.clone(), entry.stale.clone());
            }
            Some(entry) => entry.slot.get().cloned().or_else(|| entry.stale.clone()),
            None => None,
        };
        if entries.map.len() > SWEEP_ABOVE && entries.swept.elapsed() >= ttl {
            entries.map.retain(|_, entry| entry.created.elapsed() < ttl);
            entries.swept = Instant::now();
        }
        let slot = Slot::default();
        if entries.map.len() < MAX_ENTRIES || entries.map.contains_key(key) {
            let entry = Entry {
                created: Instant::now(),
                slot: slot.clone(),
                stale: stale.clone(),
            };
            entries.map.insert(key.clone(), entry);
        }
        (slot, stale)
    }

    fn remove_if(&self, key: &K, matches: impl FnOnce(&Slot<V>) -> bool) {
        let mut entries = self.lock();
        if entries
            .map
            .get(key)
            .is_some_and(|entry| matches(&entry.slot))
        {
            entries.map.remove(key);
        }
    }
}
