//! Reading usage out of the rollups.
//!
//! A billing period's usage is a sum over daily rollups (at most 31 rows per
//! feature); a time series reads minute rollups for minute and hour buckets
//! and daily rollups for day buckets. Every figure counts events by their
//! event time.

use std::collections::HashMap;

use crate::{period::BillingPeriod, tenants};
use chrono::{DateTime, NaiveDate, Utc};
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
SELECT p.tenant, d.feature, sum(d.total_tokens)::bigint AS tokens, max(d.updated_at) AS updated_at
FROM unnest($1::text[], $2::date[], $3::date[]) AS p(tenant, first_day, end_day)
JOIN daily_rollups d ON d.tenant = p.tenant AND d.day >= p.first_day AND d.day < p.end_day
GROUP BY p.tenant, d.feature
ORDER BY p.tenant, tokens DESC, d.feature
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
            period: BillingPeriod::containing(now, tenant.billing_day),
            tenant,
            by_feature: Vec::new(),
            last_counted_at: None,
        })
        .collect();
    if usage.is_empty() {
        return Ok(usage);
    }
    let ids: Vec<String> = usage.iter().map(|u| u.tenant.id.clone()).collect();
    let first_days: Vec<NaiveDate> = usage.iter().map(|u| u.period.first_day()).collect();
    let end_days: Vec<NaiveDate> = usage.iter().map(|u| u.period.end_day()).collect();
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            PERIOD_TOTALS,
            [
                Value::from(ids),
                Value::from(first_days),
                Value::from(end_days),
            ],
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
    pub fn step(self) -> chrono::Duration {
        match self {
            Self::Minute => chrono::Duration::minutes(1),
            Self::Hour => chrono::Duration::hours(1),
            Self::Day => chrono::Duration::days(1),
        }
    }

    /// The start of the bucket containing `t`.
    pub fn truncate(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let secs = t.timestamp();
        let width = self.step().num_seconds();
        DateTime::from_timestamp(secs - secs.rem_euclid(width), 0).unwrap_or(t)
    }
}

/// One bucket of a time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub start: DateTime<Utc>,
    pub tokens: i64,
    pub events: i64,
}

const MINUTE_SERIES: &str = r#"
SELECT date_trunc($2, minute, 'UTC') AS bucket,
       sum(total_tokens)::bigint AS tokens, sum(event_count)::bigint AS events
FROM rollups
WHERE tenant = $1 AND minute >= $3 AND minute < $4 AND ($5::text IS NULL OR feature = $5)
GROUP BY 1 ORDER BY 1
"#;

const DAY_SERIES: &str = r#"
SELECT (day::timestamp AT TIME ZONE 'UTC') AS bucket,
       sum(total_tokens)::bigint AS tokens, sum(event_count)::bigint AS events
FROM daily_rollups
WHERE tenant = $1 AND day >= $2::date AND day < $3::date AND ($4::text IS NULL OR feature = $4)
GROUP BY 1 ORDER BY 1
"#;

/// Token totals of `tenant` per bucket over `[from, to)` (both already
/// aligned to the granularity), every bucket present, empty ones as zero.
pub async fn time_series<C: ConnectionTrait>(
    db: &C,
    tenant: &str,
    granularity: Granularity,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    feature: Option<&str>,
) -> Result<Vec<Point>, DbErr> {
    let feature = Value::from(feature.map(str::to_owned));
    let statement = match granularity {
        Granularity::Day => Statement::from_sql_and_values(
            DbBackend::Postgres,
            DAY_SERIES,
            [
                tenant.into(),
                from.date_naive().into(),
                to.date_naive().into(),
                feature,
            ],
        ),
        Granularity::Minute | Granularity::Hour => Statement::from_sql_and_values(
            DbBackend::Postgres,
            MINUTE_SERIES,
            [
                tenant.into(),
                if granularity == Granularity::Hour {
                    "hour"
                } else {
                    "minute"
                }
                .into(),
                from.into(),
                to.into(),
                feature,
            ],
        ),
    };
    let mut counted = db.query_all_raw(statement).await?.into_iter().peekable();
    let mut points = Vec::new();
    let mut start = from;
    while start < to {
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
        start += granularity.step();
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
    fn buckets_start_on_whole_minutes_hours_and_utc_days() {
        let t = DateTime::parse_from_rfc3339("2026-11-22T10:37:42.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            Granularity::Minute.truncate(t).to_rfc3339(),
            "2026-11-22T10:37:00+00:00"
        );
        assert_eq!(
            Granularity::Hour.truncate(t).to_rfc3339(),
            "2026-11-22T10:00:00+00:00"
        );
        assert_eq!(
            Granularity::Day.truncate(t).to_rfc3339(),
            "2026-11-22T00:00:00+00:00"
        );
    }
}
