//! Billing-period arithmetic, in the tenant's time zone.
//!
//! A tenant's period starts at local midnight (its IANA `timezone`, default
//! `UTC`) on the most recent `billing_day` (1–28, so every month has it) at
//! or before now, and ends at local midnight on that day of the next month.
//! Both ends are instants: a New York period that starts in EST and ends in
//! EDT is an hour shorter than 31 × 24 h, and that is right. Where a zone
//! skips local midnight (a DST change at 00:00), the period starts at the
//! first local time that exists that day; where midnight happens twice, at
//! the first of them. Usage counts events by their event time.
//!
//! The rollups are by UTC day and minute, so a period of a zone other than
//! UTC begins and ends inside UTC days: its total is summed from daily
//! rollups for the whole UTC days it covers and from minute rollups for the
//! partial days at either end (the SQL function `period_feature_totals`,
//! migration `m20261202_000032`). Every offset in the tz database is a whole
//! number of minutes, so minute rollups split any local midnight exactly.

use chrono::{
    DateTime, Datelike, LocalResult, Months, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc,
};
pub use chrono_tz::Tz;

/// Smallest and largest billing day: 28 exists in every month.
pub const BILLING_DAYS: std::ops::RangeInclusive<i16> = 1..=28;

/// A half-open billing period `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillingPeriod {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The zone of a stored name; UTC should a hand-edited row name none the
/// tz database knows (the api accepts only names it knows).
pub fn zone_named(name: &str) -> Tz {
    name.parse().unwrap_or(Tz::UTC)
}

impl BillingPeriod {
    /// The period that contains `now` for a tenant billed on `billing_day`
    /// in `zone`.
    ///
    /// A `billing_day` outside 1–28 is clamped into it; the database refuses
    /// such values, so this only guards against a hand-edited row.
    pub fn containing(now: DateTime<Utc>, billing_day: i16, zone: Tz) -> Self {
        let day = billing_day.clamp(*BILLING_DAYS.start(), *BILLING_DAYS.end()) as u32;
        let local = now.with_timezone(&zone).date_naive();
        let this_month = first_of_month(local.year(), local.month());
        let start_month = if local.day() >= day {
            this_month
        } else {
            this_month - Months::new(1)
        };
        let start = local_midnight(zone, on_day(start_month, day));
        let end = local_midnight(zone, on_day(start_month + Months::new(1), day));
        Self { start, end }
    }
}

fn first_of_month(year: i32, month: u32) -> NaiveDate {
    // Every (year, month) taken from a valid date has a first day.
    NaiveDate::from_ymd_opt(year, month, 1).expect("the first of a real month exists")
}

fn on_day(month: NaiveDate, day: u32) -> NaiveDate {
    // `day` is at most 28, which every month has.
    month.with_day(day).expect("days 1-28 exist in every month")
}

/// The first instant of `date` in `zone`.
pub fn local_midnight(zone: Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_time(NaiveTime::MIN);
    // A gap at midnight lasts at most a few hours: the day starts at its
    // first local minute that exists.
    (0..=24 * 60)
        .find_map(|minute| {
            match zone.from_local_datetime(&(midnight + TimeDelta::minutes(minute))) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t),
                LocalResult::None => None,
            }
        })
        .map_or_else(
            || Utc.from_utc_datetime(&midnight),
            |t| t.with_timezone(&Utc),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// The period containing `now`, as the interval `start/end` (UTC, to
    /// the minute: every period starts and ends on a whole minute).
    fn zoned(now: &str, day: i16, zone: Tz) -> String {
        let p = BillingPeriod::containing(at(now), day, zone);
        let minute = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%MZ").to_string();
        format!("{}/{}", minute(p.start), minute(p.end))
    }

    fn period(now: &str, day: i16) -> String {
        zoned(now, day, chrono_tz::UTC)
    }

    #[test]
    fn a_period_runs_from_local_midnight_on_the_billing_day_to_the_next_one() {
        let (utc, ny) = (chrono_tz::UTC, chrono_tz::America::New_York);
        let kolkata = chrono_tz::Asia::Kolkata;
        // What each case shows; the instant, billing day and zone; the
        // period containing the instant.
        let cases = [
            (
                "billing day 1 is the calendar month",
                ("2026-11-22T10:00:00Z", 1, utc),
                "2026-11-01T00:00Z/2026-12-01T00:00Z",
            ),
            (
                "December rolls into January of the next year",
                ("2026-12-31T23:59:59Z", 1, utc),
                "2026-12-01T00:00Z/2027-01-01T00:00Z",
            ),
            (
                "before the billing day the period began last month",
                ("2026-11-10T00:00:00Z", 28, utc),
                "2026-10-28T00:00Z/2026-11-28T00:00Z",
            ),
            (
                "... last year, in January",
                ("2026-01-05T00:00:00Z", 15, utc),
                "2025-12-15T00:00Z/2026-01-15T00:00Z",
            ),
            (
                "billing day 28 on a leap day",
                ("2028-02-29T12:00:00Z", 28, utc),
                "2028-02-28T00:00Z/2028-03-28T00:00Z",
            ),
            (
                "billing day 28 just after February",
                ("2027-03-01T00:00:00Z", 28, utc),
                "2027-02-28T00:00Z/2027-03-28T00:00Z",
            ),
            // November 2026: EST (-05:00) from Nov 1 at 02:00; October is EDT.
            (
                "New York: starts in EDT, ends in EST (30 days and one hour)",
                ("2026-11-22T10:00:00Z", 1, ny),
                "2026-11-01T04:00Z/2026-12-01T05:00Z",
            ),
            (
                "New York: a minute before local midnight of Nov 1 is October's",
                ("2026-11-01T03:59:00Z", 1, ny),
                "2026-10-01T04:00Z/2026-11-01T04:00Z",
            ),
            (
                "New York: UTC is already Nov 1 at 02:00Z, New York still Oct 31",
                ("2026-11-01T02:00:00Z", 1, ny),
                "2026-10-01T04:00Z/2026-11-01T04:00Z",
            ),
            (
                "New York: EDT from Mar 14, so Mar 8 (EST) to Apr 8 (EDT)",
                ("2027-03-20T12:00:00Z", 8, ny),
                "2027-03-08T05:00Z/2027-04-08T04:00Z",
            ),
            (
                "New York: billing day 28 in February",
                ("2027-03-01T03:00:00Z", 28, ny),
                "2027-02-28T05:00Z/2027-03-28T04:00Z",
            ),
            (
                "Kolkata: half past six the evening before, in UTC",
                ("2026-11-22T10:00:00Z", 15, kolkata),
                "2026-11-14T18:30Z/2026-12-14T18:30Z",
            ),
            (
                "Kolkata: 18:29Z is 23:59 local, still the old period",
                ("2026-11-14T18:29:00Z", 15, kolkata),
                "2026-10-14T18:30Z/2026-11-14T18:30Z",
            ),
        ];
        for (case, (now, day, zone), expected) in cases {
            assert_eq!(zoned(now, day, zone), expected, "{case}");
        }
    }

    #[test]
    fn a_skipped_midnight_starts_the_day_at_its_first_local_minute() {
        // Santiago de Chile moved to summer time at 00:00 on 2026-09-06:
        // the day began at 01:00 local (-03:00), 04:00Z.
        let santiago = chrono_tz::America::Santiago;
        let start = local_midnight(santiago, NaiveDate::from_ymd_opt(2026, 9, 6).unwrap());
        assert_eq!(start.to_rfc3339(), "2026-09-06T04:00:00+00:00");
    }

    #[test]
    fn the_boundary_instant_belongs_to_the_new_period() {
        let p = BillingPeriod::containing(at("2026-11-15T00:00:00Z"), 15, chrono_tz::UTC);
        assert_eq!(p.start, at("2026-11-15T00:00:00Z"));
        let q = BillingPeriod::containing(at("2026-11-14T23:59:59.999Z"), 15, chrono_tz::UTC);
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
}
