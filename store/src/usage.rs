//! Reading usage out of the rollups.
//!
//! A billing period's usage, and a day bucket of a time series, is summed
//! over any span of time the way the SQL function `period_feature_totals`
//! sums tokens: daily rollups for the whole UTC days inside it (at most 31
//! rows per feature), minute rollups for the partial UTC days at its ends,
//! which a period in a time zone other than UTC has (see [`domain::period`]
//! and [`crate::costing`]). Minute and hour buckets read minute rollups.
//! Hour and day buckets are local to the time zone asked for (`tz`): a New
//! York day is 23 or 25 hours long on the days of a DST change, a Kolkata
//! hour starts at half past a UTC hour. Every figure counts events by their
//! event time, and is priced as it is read ([`crate::costing`]), so that a
//! price added later re-prices what was counted before.

use std::collections::HashMap;

use crate::{
    costing::{self, Level, Scope},
    prices,
};
use chrono::{DateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use domain::{
    money::{Amount, Budget},
    period::{BillingPeriod, local_midnight},
    pricing::Counts,
};
use entity::tenants;
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryOrder, QuerySelect, Statement, Value,
};

/// Per-feature totals for one tenant's period, largest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureTotal {
    pub feature: String,
    pub counts: Counts,
    /// The cost of the priced tokens.
    pub cost: Amount,
    /// Tokens counted at times when the feature had no price in force.
    pub unpriced_tokens: i64,
}

impl FeatureTotal {
    pub fn tokens(&self) -> i64 {
        self.counts.tokens
    }
}

/// One tenant's usage in its current billing period.
#[derive(Debug, Clone)]
pub struct PeriodUsage {
    pub tenant: tenants::Model,
    pub period: BillingPeriod,
    pub by_feature: Vec<FeatureTotal>,
    /// When the newest counted event of the period was committed.
    pub last_counted_at: Option<DateTime<Utc>>,
}

impl PeriodUsage {
    pub fn total_tokens(&self) -> i64 {
        self.by_feature.iter().map(FeatureTotal::tokens).sum()
    }

    /// Tokens used as a percentage of the quota, to two decimals (may
    /// exceed 100).
    pub fn quota_percent(&self) -> f64 {
        let percent = self.total_tokens() as f64 * 100.0 / self.tenant.monthly_quota as f64;
        (percent * 100.0).round() / 100.0
    }

    /// The exact cost of the period's priced tokens.
    pub fn cost(&self) -> Amount {
        self.by_feature.iter().map(|f| f.cost).sum()
    }

    /// Tokens that had no price in force at their event time.
    pub fn unpriced_tokens(&self) -> i64 {
        self.by_feature.iter().map(|f| f.unpriced_tokens).sum()
    }

    /// The tenant's monthly budget, if it has one.
    pub fn budget(&self) -> Option<Budget> {
        self.tenant.budget()
    }
}

/// Usage of `tenant` in the period containing `now` (a deleted tenant's
/// under the configuration it had: [`crate::tenants::configuration`]);
/// `None` if the tenant has never been seen.
pub async fn tenant_usage<C: ConnectionTrait>(
    db: &C,
    tenant: &str,
    now: DateTime<Utc>,
) -> Result<Option<PeriodUsage>, DbErr> {
    let Some(tenant) = crate::tenants::configuration(db, tenant).await? else {
        return Ok(None);
    };
    Ok(period_usage(db, vec![tenant], now).await?.pop())
}

/// Usage of every tenant (in id order, `limit` from `offset`) in each one's
/// current period.
pub async fn all_usage<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    limit: u64,
    offset: u64,
) -> Result<Vec<PeriodUsage>, DbErr> {
    let tenants = tenants::Entity::find()
        .order_by_asc(tenants::Column::Id)
        .limit(limit)
        .offset(offset)
        .all(db)
        .await?;
    period_usage(db, tenants, now).await
}

/// Usage of any number of tenants, each in its own billing period, priced
/// by the current price book: one query for the book and one for the
/// counts (plus a few where a price changes during the period).
pub async fn period_usage<C: ConnectionTrait>(
    db: &C,
    tenants: Vec<tenants::Model>,
    now: DateTime<Utc>,
) -> Result<Vec<PeriodUsage>, DbErr> {
    let mut usage: Vec<PeriodUsage> = tenants
        .into_iter()
        .map(|tenant| PeriodUsage {
            period: tenant.period(now),
            tenant,
            by_feature: Vec::new(),
            last_counted_at: None,
        })
        .collect();
    if usage.is_empty() {
        return Ok(usage);
    }
    let book = prices::price_book(db).await?;
    let scopes = usage
        .iter()
        .map(|u| Scope {
            tenant: u.tenant.id.clone(),
            feature: None,
            from: u.period.start,
            to: u.period.end,
        })
        .collect();
    let priced = costing::priced(db, &book, scopes, Level::Day).await?;
    let index: HashMap<String, usize> = usage
        .iter()
        .enumerate()
        .map(|(at, u)| (u.tenant.id.clone(), at))
        .collect();
    let mut totals: Vec<HashMap<String, FeatureTotal>> = vec![HashMap::new(); usage.len()];
    for piece in &priced.pieces {
        let Some(&at) = index.get(&piece.tenant) else {
            continue;
        };
        let total = totals[at]
            .entry(piece.feature.clone())
            .or_insert_with(|| FeatureTotal {
                feature: piece.feature.clone(),
                counts: Counts::default(),
                cost: Amount::ZERO,
                unpriced_tokens: 0,
            });
        total.counts += piece.counts;
        match piece.cost {
            Some(cost) => total.cost += cost,
            None => total.unpriced_tokens += piece.counts.tokens,
        }
    }
    for (entry, totals) in usage.iter_mut().zip(totals) {
        let mut by_feature: Vec<FeatureTotal> = totals.into_values().collect();
        by_feature.sort_by(|a, b| b.tokens().cmp(&a.tokens()).then(a.feature.cmp(&b.feature)));
        entry.by_feature = by_feature;
    }
    for entry in &mut usage {
        entry.last_counted_at = priced.last_updated.get(&entry.tenant.id).copied();
    }
    Ok(usage)
}

/// Width of one time-series bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    /// The nominal width of a bucket (a local day may be 23 or 25 hours).
    pub fn step(self) -> chrono::Duration {
        match self {
            Self::Minute => chrono::Duration::minutes(1),
            Self::Hour => chrono::Duration::hours(1),
            Self::Day => chrono::Duration::days(1),
        }
    }

    /// The start of the bucket containing `t`, in `zone`.
    pub fn truncate(self, t: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
        match self {
            // Every zone's offset is whole minutes.
            Self::Minute => floor(t, 60, 0),
            Self::Hour => {
                let offset = zone.offset_from_utc_datetime(&t.naive_utc()).fix();
                floor(t, 3600, i64::from(offset.local_minus_utc()))
            }
            Self::Day => local_midnight(zone, t.with_timezone(&zone).date_naive()),
        }
    }

    /// The start of the bucket after the one starting at `start`.
    pub fn next(self, start: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
        match self {
            Self::Minute | Self::Hour => start + self.step(),
            Self::Day => {
                let day = start.with_timezone(&zone).date_naive();
                local_midnight(zone, day.succ_opt().unwrap_or(day))
            }
        }
    }
}

/// `t` rounded down to a multiple of `width` seconds of local time, where
/// local time is `offset` seconds ahead of UTC.
fn floor(t: DateTime<Utc>, width: i64, offset: i64) -> DateTime<Utc> {
    let local = t.timestamp() + offset;
    DateTime::from_timestamp(local - local.rem_euclid(width) - offset, 0).unwrap_or(t)
}

/// One bucket of a time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub start: DateTime<Utc>,
    pub tokens: i64,
    pub events: i64,
}

/// One bucket of a tenant's time series, priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PricedPoint {
    pub start: DateTime<Utc>,
    pub counts: Counts,
    pub cost: Amount,
    /// Tokens that had no price in force at their event time.
    pub unpriced_tokens: i64,
}

/// Counts and cost of `tenant` per bucket over `[from, to)` (both already
/// aligned to the granularity in `zone`), every bucket present, empty ones
/// as zero. Minute and hour buckets are read from minute rollups; each
/// (local) day bucket from daily rollups for its whole UTC days and minute
/// rollups for the rest (finer where a price changes inside a bucket).
pub async fn time_series<C: ConnectionTrait>(
    db: &C,
    tenant: &str,
    granularity: Granularity,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    feature: Option<&str>,
    zone: Tz,
) -> Result<Vec<PricedPoint>, DbErr> {
    let book = prices::price_book(db).await?;
    let starts: Vec<DateTime<Utc>> =
        std::iter::successors(Some(from), |start| Some(granularity.next(*start, zone)))
            .take_while(|start| *start < to)
            .collect();
    let scope = |from, to| Scope {
        tenant: tenant.to_owned(),
        feature: feature.map(str::to_owned),
        from,
        to,
    };
    let (scopes, level) = match granularity {
        Granularity::Day => (
            starts
                .iter()
                .map(|start| scope(*start, granularity.next(*start, zone).min(to)))
                .collect(),
            Level::Day,
        ),
        Granularity::Minute | Granularity::Hour => (vec![scope(from, to)], Level::Minute),
    };
    let priced = costing::priced(db, &book, scopes, level).await?;
    let mut points: Vec<PricedPoint> = starts
        .iter()
        .map(|start| PricedPoint {
            start: *start,
            counts: Counts::default(),
            cost: Amount::ZERO,
            unpriced_tokens: 0,
        })
        .collect();
    for piece in priced.pieces {
        let Some(point) = starts
            .partition_point(|start| *start <= piece.start)
            .checked_sub(1)
            .and_then(|at| points.get_mut(at))
        else {
            continue;
        };
        point.counts += piece.counts;
        match piece.cost {
            Some(cost) => point.cost += cost,
            None => point.unpriced_tokens += piece.counts.tokens,
        }
    }
    Ok(points)
}

const MINUTE_TOTALS: &str = r#"
SELECT tenant, minute AS bucket,
       sum(total_tokens)::bigint AS tokens, sum(event_count)::bigint AS events
FROM rollups
WHERE tenant = ANY($1) AND minute >= $2 AND minute < $3
GROUP BY tenant, minute
"#;

/// Token totals per minute over `[from, to)` (both whole minutes) for each
/// of `tenants`, in one query: one series per tenant, in the order given,
/// every minute present, empty ones as zero.
pub async fn minute_series<C: ConnectionTrait>(
    db: &C,
    tenants: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Vec<Point>>, DbErr> {
    let step = Granularity::Minute.step();
    let empty: Vec<Point> = std::iter::successors(Some(from), |start| Some(*start + step))
        .take_while(|start| *start < to)
        .map(|start| Point {
            start,
            tokens: 0,
            events: 0,
        })
        .collect();
    let mut series = vec![empty; tenants.len()];
    if tenants.is_empty() || from >= to {
        return Ok(series);
    }
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            MINUTE_TOTALS,
            [Value::from(tenants.to_vec()), from.into(), to.into()],
        ))
        .await?;
    let index: HashMap<&str, usize> = tenants
        .iter()
        .enumerate()
        .map(|(at, tenant)| (tenant.as_str(), at))
        .collect();
    for row in rows {
        let tenant: String = row.try_get("", "tenant")?;
        let bucket: DateTime<Utc> = row.try_get("", "bucket")?;
        let minute = usize::try_from((bucket - from).num_minutes()).ok();
        let point = index
            .get(tenant.as_str())
            .zip(minute)
            .and_then(|(&at, minute)| series[at].get_mut(minute));
        if let Some(point) = point {
            point.tokens = row.try_get("", "tokens")?;
            point.events = row.try_get("", "events")?;
        }
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hours_and_days_follow_the_zone() {
        let t = DateTime::parse_from_rfc3339("2026-11-22T10:37:42Z")
            .unwrap()
            .with_timezone(&Utc);
        let kolkata = chrono_tz::Asia::Kolkata;
        assert_eq!(
            Granularity::Hour.truncate(t, kolkata).to_rfc3339(),
            "2026-11-22T10:30:00+00:00"
        );
        assert_eq!(
            Granularity::Day.truncate(t, kolkata).to_rfc3339(),
            "2026-11-21T18:30:00+00:00"
        );
        let ny = chrono_tz::America::New_York;
        let fall_back = Granularity::Day.truncate(
            DateTime::parse_from_rfc3339("2026-11-01T12:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            ny,
        );
        assert_eq!(fall_back.to_rfc3339(), "2026-11-01T04:00:00+00:00");
        assert_eq!(
            Granularity::Day.next(fall_back, ny).to_rfc3339(),
            "2026-11-02T05:00:00+00:00",
            "the day of the change has 25 hours"
        );
    }

    #[test]
    fn buckets_start_on_whole_minutes_hours_and_utc_days() {
        let t = DateTime::parse_from_rfc3339("2026-11-22T10:37:42.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            Granularity::Minute.truncate(t, chrono_tz::UTC).to_rfc3339(),
            "2026-11-22T10:37:00+00:00"
        );
        assert_eq!(
            Granularity::Hour.truncate(t, chrono_tz::UTC).to_rfc3339(),
            "2026-11-22T10:00:00+00:00"
        );
        assert_eq!(
            Granularity::Day.truncate(t, chrono_tz::UTC).to_rfc3339(),
            "2026-11-22T00:00:00+00:00"
        );
    }
}
