//! Effective-dated prices and the token counts they price.
//!
//! A feature's prices are versions, each in force from its `effective_from`
//! until the next one's; an event is priced by the version in force at its
//! event time. The [`PriceBook`] holds every version (the table is small:
//! one row per feature and price change), read fresh for each usage read,
//! so that a new or back-dated price applies at once, on every replica.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::money::{Amount, PerMillion};

/// Token counts of some events, by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub events: i64,
    pub tokens: i64,
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    pub cache_write: i64,
}

impl Counts {
    /// Tokens of events sent with `tokens` alone.
    pub fn unclassified(&self) -> i64 {
        self.tokens - (self.input + self.output + self.cache_read + self.cache_write)
    }
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Self) {
        self.events += other.events;
        self.tokens += other.tokens;
        self.input += other.input;
        self.output += other.output;
        self.cache_read += other.cache_read;
        self.cache_write += other.cache_write;
    }
}

/// One price version of a feature, per million tokens of each class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceVersion {
    pub id: i64,
    pub feature: String,
    pub effective_from: DateTime<Utc>,
    pub input: PerMillion,
    pub output: PerMillion,
    pub cache_read: PerMillion,
    pub cache_write: PerMillion,
    pub created_at: DateTime<Utc>,
}

impl PriceVersion {
    /// The highest of this version's class prices.
    pub fn dearest(&self) -> PerMillion {
        self.input
            .max(self.output)
            .max(self.cache_read)
            .max(self.cache_write)
    }

    /// The exact cost of `counts`; unclassified tokens at the input price.
    pub fn cost(&self, counts: &Counts) -> Amount {
        self.input.cost(counts.input + counts.unclassified())
            + self.output.cost(counts.output)
            + self.cache_read.cost(counts.cache_read)
            + self.cache_write.cost(counts.cache_write)
    }
}

/// Every feature's price versions, by effective time.
#[derive(Debug, Clone, Default)]
pub struct PriceBook {
    /// Per feature, in `(effective_from, id)` order: of two versions from
    /// the same moment, the later-created one is in force.
    by_feature: HashMap<String, Vec<PriceVersion>>,
}

impl PriceBook {
    pub fn new(versions: Vec<PriceVersion>) -> Self {
        let mut by_feature: HashMap<String, Vec<PriceVersion>> = HashMap::new();
        for version in versions {
            by_feature
                .entry(version.feature.clone())
                .or_default()
                .push(version);
        }
        for versions in by_feature.values_mut() {
            versions.sort_by_key(|v| (v.effective_from, v.id));
        }
        Self { by_feature }
    }

    /// The version of `feature` in force at `at`, if any.
    pub fn in_force(&self, feature: &str, at: DateTime<Utc>) -> Option<&PriceVersion> {
        let versions = self.by_feature.get(feature)?;
        let after = versions.partition_point(|v| v.effective_from <= at);
        after.checked_sub(1).map(|last| &versions[last])
    }

    /// The highest price of any token class of any feature in force at
    /// `at`: what a call whose feature is not known could cost per million
    /// tokens at most.
    pub fn dearest_in_force(&self, at: DateTime<Utc>) -> Option<PerMillion> {
        self.by_feature
            .keys()
            .filter_map(|feature| self.in_force(feature, at))
            .map(PriceVersion::dearest)
            .max()
    }

    /// Whether a version of `feature` takes effect strictly inside
    /// `(start, end)`, so that events in `[start, end)` may have different
    /// prices.
    pub fn changes_within(&self, feature: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        self.by_feature.get(feature).is_some_and(|versions| {
            versions
                .iter()
                .any(|v| start < v.effective_from && v.effective_from < end)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(id: i64, from: &str, input: &str) -> PriceVersion {
        let price = PerMillion::parse(input).unwrap();
        PriceVersion {
            id,
            feature: "gpt-4o".into(),
            effective_from: from.parse().unwrap(),
            input: price,
            output: price,
            cache_read: price,
            cache_write: price,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn the_version_in_force_is_the_latest_one_started() {
        let book = PriceBook::new(vec![
            version(2, "2026-11-02T00:00:00Z", "5"),
            version(1, "2026-11-01T00:00:00Z", "2.5"),
            version(3, "2026-11-02T00:00:00Z", "6"),
        ]);
        let at = |t: &str| book.in_force("gpt-4o", t.parse().unwrap()).map(|v| v.id);
        assert_eq!(at("2026-10-31T23:59:59Z"), None);
        assert_eq!(at("2026-11-01T00:00:00Z"), Some(1));
        assert_eq!(at("2026-11-01T23:59:59Z"), Some(1));
        assert_eq!(
            at("2026-11-02T00:00:00Z"),
            Some(3),
            "the later-created of a tie"
        );
        assert!(book.in_force("other", Utc::now()).is_none());
        let within = |a: &str, b: &str| {
            book.changes_within("gpt-4o", a.parse().unwrap(), b.parse().unwrap())
        };
        assert!(within("2026-11-01T12:00:00Z", "2026-11-02T12:00:00Z"));
        assert!(
            !within("2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z"),
            "a change at the start"
        );
        assert!(
            !within("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"),
            "a change at the end"
        );
    }

    #[test]
    fn the_dearest_price_in_force_is_the_highest_class_of_any_feature() {
        let mut dear = version(3, "2026-11-01T00:00:00Z", "1");
        dear.feature = "o1".into();
        dear.output = PerMillion::parse("60").unwrap();
        let book = PriceBook::new(vec![
            version(1, "2026-11-01T00:00:00Z", "5"),
            version(2, "2026-12-01T00:00:00Z", "90"),
            dear,
        ]);
        let at = |t: &str| {
            book.dearest_in_force(t.parse().unwrap())
                .map(|p| p.to_string())
        };
        assert_eq!(at("2026-11-15T00:00:00Z").as_deref(), Some("60.000000"));
        assert_eq!(at("2026-12-15T00:00:00Z").as_deref(), Some("90.000000"));
        assert_eq!(at("2026-10-15T00:00:00Z"), None);
    }

    #[test]
    fn unclassified_tokens_are_priced_as_input() {
        let mut v = version(1, "2026-11-01T00:00:00Z", "5");
        v.output = PerMillion::parse("20").unwrap();
        let counts = Counts {
            events: 2,
            tokens: 160_000,
            input: 100_000,
            output: 10_000,
            ..Counts::default()
        };
        assert_eq!(v.cost(&counts).to_string(), "0.950000");
    }
}
