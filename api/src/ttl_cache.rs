//! A small cache of answers that are expensive to read and fine to reuse
//! for a short while: concurrent requests for the same key share one load
//! (the first runs it, the others wait for its answer), and an answer is
//! reused until its lifetime ends. Failed loads are never cached (a cache
//! made [`TtlCache::stale_if_error`] answers them with the key's previous
//! answer instead); a successful answer is cached only if the cache's
//! `keep` rule says so.
//!
//! Such a cache also marks some answers as worth keeping (a live API key):
//! those survive sweeps after their lifetime and are stored even when the
//! cache is full, so that a flood of other keys (unknown, guessed secrets)
//! can neither sweep away nor crowd out what a failed load would fall back
//! on. They are bounded by their source (the keys that exist).
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
    /// When loading fails: which previous answers may stand in (`None`: a
    /// failure is an error).
    stale_if_error: Option<fn(&V) -> bool>,
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
            stale_if_error: None,
            entries: Arc::new(Mutex::new(Entries {
                map: HashMap::new(),
                swept: Instant::now(),
            })),
        }
    }

    /// Makes a failed load answer with the key's previous answer, if there
    /// is one that `worth_keeping` accepts, and keep it for another
    /// lifetime: for answers that stay true while their source is
    /// unreachable. Such answers are kept past their lifetime, whatever
    /// else fills the cache.
    pub fn stale_if_error(mut self, worth_keeping: fn(&V) -> bool) -> Self {
        self.stale_if_error = Some(worth_keeping);
        self
    }

    /// Whether `value` must outlive sweeps and a full cache.
    fn worth_keeping(&self, value: &V) -> bool {
        self.stale_if_error.is_some_and(|keep| keep(value))
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
        let (slot, stale, stored) = self.slot(key);
        let value = match slot.get_or_try_init(load).await {
            Ok(value) => value.clone(),
            Err(err) => match stale.filter(|_| self.stale_if_error.is_some()) {
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
        } else if !stored && self.worth_keeping(&value) {
            // The cache was full of others: this one goes in regardless.
            self.lock().map.insert(
                key.clone(),
                Entry {
                    created: Instant::now(),
                    slot,
                    stale: None,
                },
            );
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

    /// The slot holding (or about to hold) the key's answer, the answer
    /// before it, and whether the slot is in the map.
    fn slot(&self, key: &K) -> (Slot<V>, Option<V>, bool) {
        let mut entries = self.lock();
        let ttl = self.ttl;
        let stale = match entries.map.get(key) {
            Some(entry) if entry.created.elapsed() < ttl => {
                return (entry.slot.clone(), entry.stale.clone(), true);
            }
            Some(entry) => entry.slot.get().cloned().or_else(|| entry.stale.clone()),
            None => None,
        };
        if entries.map.len() > SWEEP_ABOVE && entries.swept.elapsed() >= ttl {
            entries.map.retain(|_, entry| {
                entry.created.elapsed() < ttl
                    || entry
                        .slot
                        .get()
                        .or(entry.stale.as_ref())
                        .is_some_and(|value| self.worth_keeping(value))
            });
            entries.swept = Instant::now();
        }
        let slot = Slot::default();
        let stored = entries.map.len() < MAX_ENTRIES
            || entries.map.contains_key(key)
            || stale
                .as_ref()
                .is_some_and(|value| self.worth_keeping(value));
        if stored {
            let entry = Entry {
                created: Instant::now(),
                slot: slot.clone(),
                stale: stale.clone(),
            };
            entries.map.insert(key.clone(), entry);
        }
        (slot, stale, stored)
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn fails() -> Result<Option<u32>, ()> {
        Err(())
    }

    #[tokio::test]
    async fn a_flood_of_unknown_keys_does_not_make_the_cache_forget_a_known_one() {
        let ttl = Duration::from_millis(20);
        let cache: TtlCache<u32, Option<u32>> =
            TtlCache::new(ttl, |_| true).stale_if_error(Option::is_some);
        cache
            .get(&0, || async { Ok::<_, ()>(Some(7)) })
            .await
            .unwrap();
        // Unknown keys, past the sweep point, after the known answer expired.
        tokio::time::sleep(ttl * 2).await;
        for junk in 1..=(SWEEP_ABOVE as u32 + 2) {
            cache
                .get(&junk, || async { Ok::<_, ()>(None) })
                .await
                .unwrap();
        }
        tokio::time::sleep(ttl * 2).await;
        // One more unknown key sweeps; then the source fails.
        cache
            .get(&u32::MAX, || async { Ok::<_, ()>(None) })
            .await
            .unwrap();

        assert_eq!(cache.get(&0, fails).await, Ok(Some(7)));
        assert_eq!(
            cache.get(&1, fails).await,
            Err(()),
            "unknown keys were swept"
        );
    }

    #[tokio::test]
    async fn a_known_key_is_stored_even_when_the_cache_is_full() {
        let cache: TtlCache<u32, Option<u32>> =
            TtlCache::new(Duration::from_secs(60), |_| true).stale_if_error(Option::is_some);
        for junk in 1..=(MAX_ENTRIES as u32) {
            cache
                .get(&junk, || async { Ok::<_, ()>(None) })
                .await
                .unwrap();
        }
        cache
            .get(&0, || async { Ok::<_, ()>(Some(7)) })
            .await
            .unwrap();

        assert_eq!(cache.get(&0, fails).await, Ok(Some(7)));
    }
}
