//! Billing-period arithmetic.
//!
//! A tenant's period starts at 00:00 UTC on the most recent `billing_day`
//! (1–28, so every month has it) at or before now, and ends at the same day of
//! the next month. Usage counts events by their event time.

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Utc};

/// Smallest and largest billing day: 28 exists in every month.
pub const BILLING_DAYS: std::ops::RangeInclusive<i16> = 1..=28;

/// A half-open billing period `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillingPeriod {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl BillingPeriod {
    /// The period that contains `now` for a tenant billed on `billing_day`.
    ///
    /// A `billing_day` outside 1–28 is clamped into it; the database refuses
    /// such values, so this only guards against a hand-edited row.
    pub fn containing(now: DateTime<Utc>, billing_day: i16) -> Self {
        let day = billing_day.clamp(*BILLING_DAYS.start(), *BILLING_DAYS.end()) as u32;
        let this_month = first_of_month(now.year(), now.month());
        let start_month = if now.day() >= day {
            this_month
        } else {
            this_month - Months::new(1)
        };
        let start = at_midnight(start_month, day);
        let end = at_midnight(start_month + Months::new(1), day);
        Self { start, end }
    }

    /// The first UTC day of the period (inclusive), for daily rollups.
    pub fn first_day(&self) -> NaiveDate {
        self.start.date_naive()
    }

    /// The UTC day the period ends on (exclusive), for daily rollups.
    pub fn end_day(&self) -> NaiveDate {
        self.end.date_naive()
    }
}

fn first_of_month(year: i32, month: u32) -> NaiveDate {
    // Every (year, month) taken from a valid date has a first day.
    NaiveDate::from_ymd_opt(year, month, 1).expect("the first of a real month exists")
}

fn at_midnight(month: NaiveDate, day: u32) -> DateTime<Utc> {
    // `day` is at most 28, which every month has.
    let date = month.with_day(day).expect("days 1-28 exist in every month");
    Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn period(now: &str, day: i16) -> (String, String) {
        let p = BillingPeriod::containing(at(now), day);
        (p.start.to_rfc3339(), p.end.to_rfc3339())
    }

    #[test]
    fn billing_day_one_is_the_calendar_month() {
        assert_eq!(
            period("2026-11-22T10:00:00Z", 1),
            (
                "2026-11-01T00:00:00+00:00".into(),
                "2026-12-01T00:00:00+00:00".into()
            )
        );
    }

    #[test]
    fn december_rolls_into_january_of_the_next_year() {
        assert_eq!(
            period("2026-12-31T23:59:59Z", 1),
            (
                "2026-12-01T00:00:00+00:00".into(),
                "2027-01-01T00:00:00+00:00".into()
            )
        );
    }

    #[test]
    fn before_the_billing_day_the_period_began_last_month() {
        assert_eq!(
            period("2026-11-10T00:00:00Z", 28),
            (
                "2026-10-28T00:00:00+00:00".into(),
                "2026-11-28T00:00:00+00:00".into()
            )
        );
        assert_eq!(
            period("2026-01-05T00:00:00Z", 15),
            (
                "2025-12-15T00:00:00+00:00".into(),
                "2026-01-15T00:00:00+00:00".into()
            )
        );
    }

    #[test]
    fn billing_day_28_across_february_and_a_leap_day() {
        assert_eq!(
            period("2028-02-29T12:00:00Z", 28),
            (
                "2028-02-28T00:00:00+00:00".into(),
                "2028-03-28T00:00:00+00:00".into()
            )
        );
        assert_eq!(
            period("2027-03-01T00:00:00Z", 28),
            (
                "2027-02-28T00:00:00+00:00".into(),
                "2027-03-28T00:00:00+00:00".into()
            )
        );
    }

    #[test]
    fn the_boundary_instant_belongs_to_the_new_period() {
        let p = BillingPeriod::containing(at("2026-11-15T00:00:00Z"), 15);
        assert_eq!(p.start, at("2026-11-15T00:00:00Z"));
        let q = BillingPeriod::containing(at("2026-11-14T23:59:59.999Z"), 15);
        assert_eq!(q.end, p.start);
    }

    #[test]
    fn out_of_range_billing_days_are_clamped() {
        assert_eq!(
            period("2026-11-22T00:00:00Z", 0),
            period("2026-11-22T00:00:00Z", 1)
        );
        assert_eq!(
            period("2026-11-22T00:00:00Z", 31),
            period("2026-11-22T00:00:00Z", 28)
        );
    }

    #[test]
    fn day_bounds_match_the_period() {
        let p = BillingPeriod::containing(at("2026-11-22T10:00:00Z"), 3);
        assert_eq!(p.first_day().to_string(), "2026-11-03");
        assert_eq!(p.end_day().to_string(), "2026-12-03");
    }
}
