//! Reading usage out of the rollups.
//!
//! A billing period's usage, and a day bucket of a time series, is a sum
//! over any span of time by the SQL function `period_feature_totals`: daily
//! rollups for the whole UTC days inside it (at most 31 rows per feature),
//! minute rollups for the partial UTC days at its ends, which a period in a
//! time zone other than UTC has (see [`crate::period`]). Minute and hour
//! buckets read minute rollups. Hour and day buckets are local to the time
//! zone asked for (`tz`): a New York day is 23 or 25 hours long on the days
//! of a DST change, a Kolkata hour starts at half past a UTC hour. Every
//! figure counts events by their event time.

use std::collections::HashMap;

use crate::{
    period::{BillingPeriod, local_midnight},
    tenants,
};
use chrono::{DateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryOrder, QuerySelect, Statement, Value,
};

/// Per-feature token totals for one tenant's period, largest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureTotal {
    pub feature: String,
    pub tokens: i64,
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
        self.by_feature.iter().map(|f| f.tokens).sum()
    }

    /// Tokens used as a percentage of the quota, to two decimals (may
    /// exceed 100).
    pub fn quota_percent(&self) -> f64 {
        let percent = self.total_tokens() as f64 * 100.0 / self.tenant.monthly_quota as f64;
        (percent * 100.0).round() / 100.0
    }
}

const PERIOD_TOTALS: &str = r#"
SELECT p.tenant, t.feature, t.tokens, t.updated_at
FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS p(tenant, period_start, period_end)
CROSS JOIN LATERAL period_feature_totals(p.tenant, p.period_start, p.period_end) AS t
ORDER BY p.tenant, t.tokens DESC, t.feature
"#;

/// Usage of `tenant` in the period containing `now`; `None` if the tenant
/// has never been seen.
pub async fn tenant_usage<C: ConnectionTrait>(
    db: &C,
    tenant: &str,
    now: DateTime<Utc>,
) -> Result<Option<PeriodUsage>, DbErr> {
    let Some(tenant) = tenants::Entity::find_by_id(tenant).one(db).await? else {
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

/// One query for any number of tenants, each with its own billing period.
pub async fn period_usage<C: ConnectionTrait>(
    db: &C,
    tenants: Vec<tenants::Model>,
    now: DateTime<Utc>,
) -> Result<Vec<PeriodUsage>, DbErr> {
    let mut usage: Vec<PeriodUsage> = tenants
        .into_iter()
        .map(|tenant| PeriodUsage {
            period: BillingPeriod::of(&tenant, now),
            tenant,
            by_feature: Vec::new(),
            last_counted_at: None,
        })
        .collect();
    if usage.is_empty() {
        return Ok(usage);
    }
    let ids: Vec<String> = usage.iter().map(|u| u.tenant.id.clone()).collect();
    let starts: Vec<DateTime<Utc>> = usage.iter().map(|u| u.period.start).collect();
    let ends: Vec<DateTime<Utc>> = usage.iter().map(|u| u.period.end).collect();
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            PERIOD_TOTALS,
            [Value::from(ids), Value::from(starts), Value::from(ends)],
        ))
        .await?;
    let index: HashMap<String, usize> = usage
        .iter()
        .enumerate()
        .map(|(at, u)| (u.tenant.id.clone(), at))
        .collect();
    for row in rows {
        let tenant: String = row.try_get("", "tenant")?;
        let Some(&at) = index.get(&tenant) else {
            continue;
        };
        let entry = &mut usage[at];
        let updated_at: DateTime<Utc> = row.try_get("", "updated_at")?;
        entry.last_counted_at = entry.last_counted_at.max(Some(updated_at));
        entry.by_feature.push(FeatureTotal {
            feature: row.try_get("", "feature")?,
            tokens: row.try_get("", "tokens")?,
        });
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

const MINUTE_SERIES: &str = r#"
SELECT minute AS bucket, sum(total_tokens)::bigint AS tokens, sum(event_count)::bigint AS events
FROM rollups
WHERE tenant = $1 AND minute >= $2 AND minute < $3 AND ($4::text IS NULL OR feature = $4)
GROUP BY 1 ORDER BY 1
"#;

/// Hour buckets, given as `[start, stop)` pairs (local hours).
const HOUR_SERIES: &str = r#"
SELECT b.start AS bucket, sum(r.total_tokens)::bigint AS tokens, sum(r.event_count)::bigint AS events
FROM unnest($2::timestamptz[], $3::timestamptz[]) AS b(start, stop)
JOIN rollups r ON r.tenant = $1 AND r.minute >= b.start AND r.minute < b.stop
              AND ($4::text IS NULL OR r.feature = $4)
GROUP BY 1 ORDER BY 1
"#;

/// Day buckets, given as `[start, stop)` pairs (local days).
const DAY_SERIES: &str = r#"
SELECT b.start AS bucket, sum(t.tokens)::bigint AS tokens, sum(t.events)::bigint AS events
FROM unnest($2::timestamptz[], $3::timestamptz[]) AS b(start, stop)
CROSS JOIN LATERAL period_feature_totals($1, b.start, b.stop) AS t
WHERE $4::text IS NULL OR t.feature = $4
GROUP BY 1 ORDER BY 1
"#;

/// Token totals of `tenant` per bucket over `[from, to)` (both already
/// aligned to the granularity in `zone`), every bucket present, empty ones
/// as zero.
pub async fn time_series<C: ConnectionTrait>(
    db: &C,
    tenant: &str,
    granularity: Granularity,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    feature: Option<&str>,
    zone: Tz,
) -> Result<Vec<Point>, DbErr> {
    let starts: Vec<DateTime<Utc>> =
        std::iter::successors(Some(from), |start| Some(granularity.next(*start, zone)))
            .take_while(|start| *start < to)
            .collect();
    let feature = Value::from(feature.map(str::to_owned));
    let bounds = || {
        let stops: Vec<DateTime<Utc>> = starts
            .iter()
            .map(|start| granularity.next(*start, zone).min(to))
            .collect();
        [Value::from(starts.clone()), Value::from(stops)]
    };
    let statement = match granularity {
        Granularity::Minute => Statement::from_sql_and_values(
            DbBackend::Postgres,
            MINUTE_SERIES,
            [tenant.into(), from.into(), to.into(), feature],
        ),
        Granularity::Hour | Granularity::Day => {
            let [starts, stops] = bounds();
            let sql = if granularity == Granularity::Hour {
                HOUR_SERIES
            } else {
                DAY_SERIES
            };
            Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                [tenant.into(), starts, stops, feature],
            )
        }
    };
    let mut counted = db.query_all_raw(statement).await?.into_iter().peekable();
    let mut points = Vec::with_capacity(starts.len());
    for start in starts {
        let mut point = Point {
            start,
            tokens: 0,
            events: 0,
        };
        if let Some(row) = counted.peek() {
            let bucket: DateTime<Utc> = row.try_get("", "bucket")?;
            if bucket == start {
                point.tokens = row.try_get("", "tokens")?;
                point.events = row.try_get("", "events")?;
                counted.next();
            }
        }
        points.push(point);
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
