//! What the run measured: latencies in an HDR histogram, answers by status,
//! transport errors by kind, and event counts, shared by every task.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use hdrhistogram::Histogram;

use crate::{
    client::{Outcome, TransportError},
    traffic::Kind,
};

/// Largest latency the histogram tells apart (one hour, in µs); longer ones
/// are recorded as this.
const MAX_LATENCY_MICROS: u64 = 3_600_000_000;

/// Counters shared by the run's tasks.
pub struct Stats {
    inner: Mutex<Totals>,
    completed: AtomicU64,
    errors: AtomicU64,
}

/// Everything measured so far.
#[derive(Clone)]
pub struct Totals {
    /// Latency of every completed request, in µs.
    pub latency: Histogram<u64>,
    /// Every HTTP answer by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Answers that were not the hoped-for one (202 for posts; 200 or 404
    /// for reads), by status.
    pub error_statuses: BTreeMap<u16, u64>,
    pub transport_errors: BTreeMap<TransportError, u64>,
    /// Events in completed posts, whatever their answer.
    pub events_sent: u64,
    /// Events in posts answered 202.
    pub events_accepted: u64,
}

impl Totals {
    pub fn requests(&self) -> u64 {
        self.latency.len()
    }

    pub fn errors(&self) -> u64 {
        self.error_statuses.values().sum::<u64>() + self.transport_errors.values().sum::<u64>()
    }

    /// Latency at `quantile` (0–1) in milliseconds.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }
}

impl Stats {
    pub fn new() -> anyhow::Result<Self> {
        let latency = Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3)
            .context("create the latency histogram")?;
        Ok(Self {
            inner: Mutex::new(Totals {
                latency,
                statuses: BTreeMap::new(),
                error_statuses: BTreeMap::new(),
                transport_errors: BTreeMap::new(),
                events_sent: 0,
                events_accepted: 0,
            }),
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    /// A poisoned lock only means a task panicked mid-update of counters
    /// that are still meaningful; keep counting.
    fn lock(&self) -> MutexGuard<'_, Totals> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one completed request carrying `events` events.
    pub fn record(&self, kind: Kind, latency: Duration, outcome: Outcome, events: u64) {
        let success = outcome.is_success(kind);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        {
            let mut totals = self.lock();
            totals.latency.saturating_record(micros.max(1));
            match outcome {
                Outcome::Status(status) => {
                    *totals.statuses.entry(status).or_default() += 1;
                    if !success {
                        *totals.error_statuses.entry(status).or_default() += 1;
                    }
                }
                Outcome::Transport(error) => {
                    *totals.transport_errors.entry(error).or_default() += 1;
                }
            }
            totals.events_sent += events;
            if success && kind == Kind::Post {
                totals.events_accepted += events;
            }
        }
        self.completed.fetch_add(1, Ordering::Relaxed);
        if !success {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests completed so far.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Requests so far without the hoped-for answer.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// P99 latency so far, in milliseconds.
    pub fn p99_ms(&self) -> f64 {
        self.lock().quantile_ms(0.99)
    }

    /// A copy of everything measured.
    pub fn totals(&self) -> Totals {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_status_and_success() {
        let stats = Stats::new().unwrap();
        let ms = Duration::from_millis;
        stats.record(Kind::Post, ms(2), Outcome::Status(202), 10);
        stats.record(Kind::Post, ms(4), Outcome::Status(503), 10);
        stats.record(Kind::Read, ms(1), Outcome::Status(404), 0);
        stats.record(
            Kind::Read,
            ms(30_000),
            Outcome::Transport(TransportError::Timeout),
            0,
        );
        assert_eq!(stats.completed(), 4);
        assert_eq!(stats.errors(), 2);
        let totals = stats.totals();
        assert_eq!(totals.requests(), 4);
        assert_eq!(totals.errors(), 2);
        assert_eq!(totals.statuses[&202], 1);
        assert_eq!(totals.statuses[&404], 1);
        assert_eq!(totals.error_statuses.keys().collect::<Vec<_>>(), [&503]);
        assert_eq!(totals.transport_errors[&TransportError::Timeout], 1);
        assert_eq!(totals.events_sent, 20);
        assert_eq!(totals.events_accepted, 10);
        assert!((totals.max_ms() - 30_000.0).abs() < 30.0);
        assert!((totals.quantile_ms(0.5) - 2.0).abs() < 0.01);
    }
}
