//! What a reservation or an accepted event costs while it holds room
//! against a budget, in micro-units rounded up (so that what is held is
//! never less than the cost), at the prices in force.
//!
//! An accepted event is priced as it will be once counted (`store::usage`):
//! by the version of its feature in force at its event time, unclassified
//! tokens at the input price, no price in force costing nothing. A
//! reservation is an estimate of a call to come: its classes at the
//! feature's prices now, and its unclassified tokens at the feature's
//! dearest class, since the call they cover may well be output; without a
//! feature, at the dearest price of any feature. The counted cost replaces
//! these estimates once the pipeline has counted the event.
//!
//! The price book is read from PostgreSQL at most once a second per
//! replica ([`Prices`]), in the background while the previous one
//! answers: a price added elsewhere applies here within a second.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use domain::{
    money::Amount,
    pricing::{Counts, PriceBook},
    validate::TokenClasses,
};
use sea_orm::DatabaseConnection;

/// How long a price book answers before it is read again.
const PRICES_TTL: Duration = Duration::from_secs(1);
/// How long a request waits for the replica's first price book.
const FIRST_READ_WAIT: Duration = Duration::from_millis(200);

/// The replica's latest price book.
#[derive(Clone, Default)]
pub struct Prices(Arc<Mutex<Latest>>);

#[derive(Default)]
struct Latest {
    book: Option<(Arc<PriceBook>, Instant)>,
    reading: bool,
}

impl Prices {
    /// The latest book: read now if there is none yet, waiting at most
    /// `FIRST_READ_WAIT` (past it, or if PostgreSQL cannot be read, an
    /// empty book stands in, so that ingest never waits for a database
    /// that is down), read again in the background once it is older than
    /// a second.
    pub async fn book(&self, db: &DatabaseConnection) -> Arc<PriceBook> {
        let (book, stale) = {
            let mut latest = self.lock();
            let stale = latest
                .book
                .as_ref()
                .is_none_or(|(_, read)| read.elapsed() >= PRICES_TTL);
            let start = stale && !latest.reading;
            if start {
                latest.reading = true;
            }
            (latest.book.as_ref().map(|(b, _)| b.clone()), start)
        };
        match (book, stale) {
            (Some(book), false) => book,
            (Some(book), true) => {
                let (prices, db) = (self.clone(), db.clone());
                tokio::spawn(async move { prices.read(&db).await });
                book
            }
            (None, _) => tokio::time::timeout(FIRST_READ_WAIT, self.read(db))
                .await
                .unwrap_or_else(|_| self.stand_in()),
        }
    }

    /// After a read that failed or took too long: the last book (an
    /// empty one, costing nothing, if none was ever read), kept as if read
    /// now, so that the next read is a second later, in the background,
    /// rather than one per request while PostgreSQL is down.
    fn stand_in(&self) -> Arc<PriceBook> {
        let mut latest = self.lock();
        latest.reading = false;
        let book = latest.book.take().map(|(book, _)| book).unwrap_or_default();
        latest.book = Some((book.clone(), Instant::now()));
        book
    }

    /// Reads the book and keeps it (or keeps the last one, if the read
    /// fails).
    async fn read(&self, db: &DatabaseConnection) -> Arc<PriceBook> {
        let read = store::prices::price_book(db).await;
        let mut latest = self.lock();
        latest.reading = false;
        match read {
            Ok(book) => {
                let book = Arc::new(book);
                latest.book = Some((book.clone(), Instant::now()));
                book
            }
            Err(err) => {
                tracing::warn!(%err, "cannot read the prices; costs use the last ones read");
                drop(latest);
                self.stand_in()
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Latest> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The counts of one event or call: `tokens` in all, of which the classes.
fn counts(tokens: i64, classes: &TokenClasses) -> Counts {
    Counts {
        events: 1,
        tokens,
        input: classes.input.unwrap_or(0),
        output: classes.output.unwrap_or(0),
        cache_read: classes.cache_read.unwrap_or(0),
        cache_write: classes.cache_write.unwrap_or(0),
    }
}

/// An accepted event's cost, as it will be counted.
pub fn of_event(
    book: &PriceBook,
    feature: &str,
    tokens: i64,
    classes: &TokenClasses,
    occurred: DateTime<Utc>,
) -> i64 {
    book.in_force(feature, occurred).map_or(0, |version| {
        version.cost(&counts(tokens, classes)).micros_rounded_up()
    })
}

/// What a call of `tokens` (with `classes`, of `feature` if known) may
/// cost at the prices in force at `now`.
pub fn of_reservation(
    book: &PriceBook,
    feature: Option<&str>,
    tokens: i64,
    classes: &TokenClasses,
    now: DateTime<Utc>,
) -> i64 {
    let counts = counts(tokens, classes);
    let cost = match feature {
        Some(feature) => book.in_force(feature, now).map(|version| {
            let classified = Counts {
                tokens: tokens - counts.unclassified(),
                ..counts
            };
            version.cost(&classified) + version.dearest().cost(counts.unclassified())
        }),
        None => book.dearest_in_force(now).map(|price| price.cost(tokens)),
    };
    cost.unwrap_or(Amount::ZERO).micros_rounded_up()
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{money::PerMillion, pricing::PriceVersion};

    fn book() -> PriceBook {
        let price = |p: &str| PerMillion::parse(p).unwrap();
        PriceBook::new(vec![PriceVersion {
            id: 1,
            feature: "gpt-4o".into(),
            effective_from: "2026-01-01T00:00:00Z".parse().unwrap(),
            input: price("2.50"),
            output: price("10"),
            cache_read: price("1.25"),
            cache_write: price("2.50"),
            created_at: Utc::now(),
        }])
    }

    fn at(t: &str) -> DateTime<Utc> {
        t.parse().unwrap()
    }

    #[test]
    fn an_event_costs_what_it_will_cost_once_counted() {
        let book = book();
        let classes = TokenClasses {
            input: Some(1_000_000),
            output: Some(100_000),
            ..TokenClasses::default()
        };
        let now = at("2026-06-01T00:00:00Z");
        assert_eq!(
            of_event(&book, "gpt-4o", 1_100_000, &classes, now),
            3_500_000
        );
        // Unclassified at the input price: 2.5 micro-units, rounded up.
        let none = TokenClasses::default();
        assert_eq!(of_event(&book, "gpt-4o", 1, &none, now), 3);
        assert_eq!(of_event(&book, "unpriced", 1_000_000, &none, now), 0);
        let before = at("2025-06-01T00:00:00Z");
        assert_eq!(of_event(&book, "gpt-4o", 1_000_000, &none, before), 0);
    }

    #[test]
    fn a_reservation_holds_the_most_its_call_may_cost() {
        let book = book();
        let now = at("2026-06-01T00:00:00Z");
        let none = TokenClasses::default();
        // Unclassified tokens at the dearest class: output.
        assert_eq!(
            of_reservation(&book, Some("gpt-4o"), 1_000_000, &none, now),
            10_000_000
        );
        let classes = TokenClasses {
            input: Some(1_000_000),
            ..TokenClasses::default()
        };
        assert_eq!(
            of_reservation(&book, Some("gpt-4o"), 1_000_000, &classes, now),
            2_500_000
        );
        // No feature: the dearest price of any feature.
        assert_eq!(
            of_reservation(&book, None, 1_000_000, &none, now),
            10_000_000
        );
        assert_eq!(
            of_reservation(&PriceBook::default(), None, 5, &none, now),
            0
        );
    }
}
