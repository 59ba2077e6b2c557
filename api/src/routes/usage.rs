//! `GET /api/usage/{tenant}`, `GET /api/usage` and
//! `GET /api/usage/{tenant}/timeseries`: how much of its quota (and budget)
//! a tenant has used this billing period, what it cost, and how usage spread
//! over time.

use chrono::{DateTime, Utc};
use poem_openapi::{
    Enum, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use sea_orm::FromQueryResult;
use serde_json::json;

use domain::{money::Amount, pricing::Counts};
use store::usage::{self as usage_query, Granularity, PeriodUsage};

use super::{
    ApiTags, Found, invalid,
    paging::{Limit, Offset},
    rules::{FeatureName, TenantSlug},
};
use crate::{
    auth::{ApiKey, Scope},
    error::ApiError,
    state::AppState,
};

/// Most buckets one time series may hold (a week of minutes).
const MAX_BUCKETS: i64 = 7 * 24 * 60;

/// Tokens one feature used in the period, by class, and their cost.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct FeatureUsage {
    pub feature: String,
    pub total_tokens: i64,
    #[oai(flatten)]
    pub priced: PricedTokens,
}

/// Tokens by class, as the usage routes and the event explorer
/// ([`super::explorer`]) answer them (flattened into their rows), read from
/// the columns of the same names. Unclassified tokens (events sent with
/// `tokens` alone) are the total minus the four classes, and are priced at
/// the input price.
#[derive(Debug, Object, FromQueryResult)]
#[oai(rename_all = "camelCase")]
pub struct TokensByClass {
    /// Input (prompt) tokens.
    pub input_tokens: i64,
    /// Output (completion) tokens.
    pub output_tokens: i64,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read_tokens: i64,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write_tokens: i64,
}

impl From<&Counts> for TokensByClass {
    fn from(c: &Counts) -> Self {
        Self {
            input_tokens: c.input,
            output_tokens: c.output,
            cache_read_tokens: c.cache_read,
            cache_write_tokens: c.cache_write,
        }
    }
}

/// Tokens by class and their cost.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct PricedTokens {
    #[oai(flatten)]
    pub tokens: TokensByClass,
    /// Exact cost of the priced tokens (decimal string, at least 6
    /// decimals, in `currency`).
    pub cost: String,
    /// Tokens counted when their feature had no price in force.
    pub unpriced_tokens: i64,
}

impl PricedTokens {
    fn new(c: Counts, cost: Amount, unpriced_tokens: i64) -> Self {
        Self {
            tokens: TokensByClass::from(&c),
            cost: cost.to_string(),
            unpriced_tokens,
        }
    }
}

/// A tenant and how much of its quota it has used in its current billing
/// period, as the usage routes and the dashboard ([`crate::dashboard`])
/// both answer it (flattened into their rows).
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(rename_all = "camelCase")]
pub struct QuotaUsage {
    pub tenant: String,
    pub tenant_name: String,
    /// Tokens counted in the period, by event time.
    pub total_tokens: i64,
    pub monthly_quota: i64,
    /// `totalTokens` as a percentage of `monthlyQuota` (may exceed 100).
    pub quota_percent: f64,
}

impl QuotaUsage {
    pub fn of(usage: &PeriodUsage) -> Self {
        Self {
            tenant: usage.tenant.id.clone(),
            tenant_name: usage.tenant.name.clone(),
            total_tokens: usage.total_tokens(),
            monthly_quota: usage.tenant.monthly_quota,
            quota_percent: usage.quota_percent(),
        }
    }
}

/// A tenant's monthly budget and how much of it the period's cost is, if
/// it has one; flattened, as [`QuotaUsage`] is.
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(rename_all = "camelCase")]
pub struct BudgetUsage {
    /// The tenant's monthly budget (decimal string), if it has one.
    #[oai(skip_serializing_if_is_none)]
    pub budget: Option<String>,
    /// `cost` as a percentage of `budget`, to two decimals (may exceed 100);
    /// present with `budget`.
    #[oai(skip_serializing_if_is_none)]
    pub budget_percent: Option<f64>,
}

impl BudgetUsage {
    pub fn of(usage: &PeriodUsage) -> Self {
        let budget = usage.budget();
        Self {
            budget: budget.map(|b| b.to_string()),
            budget_percent: budget.map(|b| usage.cost().percent_of(b)),
        }
    }
}

/// A tenant's usage in its current billing period.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct TenantUsage {
    #[oai(flatten)]
    pub quota: QuotaUsage,
    /// Exact cost of the period's priced tokens: each event priced by the
    /// version in force at its event time, computed now from the counted
    /// classes (decimal string, at least 6 decimals; never rounded).
    pub cost: String,
    /// The deployment's currency (`FLAGMETER_CURRENCY`).
    pub currency: String,
    /// Tokens counted for a feature that had no price in force at their
    /// event time (not in `cost`, so that nothing is silently free).
    pub unpriced_tokens: i64,
    #[oai(flatten)]
    pub budget: BudgetUsage,
    /// Start of the period (inclusive): local midnight, in the tenant's
    /// `timezone`, on the billing day.
    pub period_start: DateTime<Utc>,
    /// End of the period (exclusive).
    pub period_end: DateTime<Utc>,
    /// Per-feature totals, largest first.
    pub by_feature: Vec<FeatureUsage>,
    /// When these figures were read from the rollups (a tenant's figures
    /// may be reused for `FLAGMETER_USAGE_CACHE_MS`).
    pub as_of: DateTime<Utc>,
    /// When the newest counted event of the period was committed; absent
    /// when nothing has been counted yet. Events accepted after it may still
    /// be on their way through the pipeline.
    #[oai(skip_serializing_if_is_none)]
    pub last_counted_at: Option<DateTime<Utc>>,
}

impl TenantUsage {
    fn new(usage: PeriodUsage, as_of: DateTime<Utc>, currency: &str) -> Self {
        Self {
            quota: QuotaUsage::of(&usage),
            cost: usage.cost().to_string(),
            currency: currency.to_owned(),
            unpriced_tokens: usage.unpriced_tokens(),
            budget: BudgetUsage::of(&usage),
            period_start: usage.period.start,
            period_end: usage.period.end,
            by_feature: usage
                .by_feature
                .into_iter()
                .map(|f| FeatureUsage {
                    total_tokens: f.counts.tokens,
                    priced: PricedTokens::new(f.counts, f.cost, f.unpriced_tokens),
                    feature: f.feature,
                })
                .collect(),
            as_of,
            last_counted_at: usage.last_counted_at,
        }
    }
}

/// Every tenant's usage, in tenant id order.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct UsageList {
    pub tenants: Vec<TenantUsage>,
    pub as_of: DateTime<Utc>,
}

/// Bucket width of a time series.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
pub enum GranularityParam {
    Minute,
    Hour,
    Day,
}

impl From<GranularityParam> for Granularity {
    fn from(value: GranularityParam) -> Self {
        match value {
            GranularityParam::Minute => Granularity::Minute,
            GranularityParam::Hour => Granularity::Hour,
            GranularityParam::Day => Granularity::Day,
        }
    }
}

/// One bucket.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct SeriesPoint {
    /// Start of the bucket.
    pub start: DateTime<Utc>,
    pub total_tokens: i64,
    pub event_count: i64,
    #[oai(flatten)]
    pub priced: PricedTokens,
}

/// Usage per bucket, every bucket of the range present.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct TimeSeries {
    pub tenant: String,
    pub granularity: GranularityParam,
    /// The time zone of the hour and day buckets.
    pub tz: String,
    /// Start of the first bucket.
    pub from: DateTime<Utc>,
    /// End of the last bucket (exclusive).
    pub to: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub feature: Option<String>,
    pub points: Vec<SeriesPoint>,
}

/// The routes below, over the shared state.
pub struct UsageApi(pub AppState);

#[OpenApi(tag = "ApiTags::Usage")]
impl UsageApi {
    /// A tenant's usage in its current billing period.
    #[oai(path = "/api/usage/:tenant", method = "get", operation_id = "getUsage")]
    async fn tenant_usage(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
    ) -> Result<Found<TenantUsage>, ApiError> {
        auth.0.require_for(Scope::Read, &tenant)?;
        let db = &self.0.db;
        let snapshot = self
            .0
            .usage_cache
            .get(&tenant, || {
                usage_query::tenant_usage(db, &tenant, Utc::now())
            })
            .await?
            .ok_or_else(|| ApiError::unknown_tenant(&tenant))?;
        Ok(Found::Ok(Json(TenantUsage::new(
            snapshot.usage,
            snapshot.read_at,
            &self.0.currency,
        ))))
    }

    /// Every tenant's usage in its current billing period.
    #[oai(path = "/api/usage", method = "get", operation_id = "listUsage")]
    async fn all_usage(
        &self,
        auth: ApiKey,
        /// Most tenants to return (1–1000).
        limit: Limit<1000>,
        /// Tenants to skip, for the next page (at most 2^53 − 1, the largest
        /// integer every JSON client holds exactly; the database's limit is
        /// 2^63 − 1).
        offset: Offset,
    ) -> Result<Found<UsageList>, ApiError> {
        auth.0.require_all_tenants(Scope::Read)?;
        let now = Utc::now();
        let usage = usage_query::all_usage(&self.0.db, now, limit.0, offset.0).await?;
        Ok(Found::Ok(Json(UsageList {
            tenants: usage
                .into_iter()
                .map(|u| TenantUsage::new(u, now, &self.0.currency))
                .collect(),
            as_of: now,
        })))
    }

    /// A tenant's usage per minute, hour or day.
    ///
    /// Defaults: `to` is now (its bucket included); `from` is 60 minutes,
    /// 24 hours or 31 days before `to`. At most 10,080 buckets. Hours and
    /// days are those of `tz` (default: the tenant's `timezone`): a day
    /// bucket runs from local midnight to local midnight.
    #[oai(
        path = "/api/usage/:tenant/timeseries",
        method = "get",
        operation_id = "getTimeseries"
    )]
    // Each query parameter is an argument: that is how poem-openapi
    // documents them.
    #[allow(clippy::too_many_arguments)]
    async fn time_series(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
        /// Bucket width.
        #[oai(default = "default_granularity")]
        granularity: Query<GranularityParam>,
        /// Start of the range (RFC 3339), rounded down to a bucket.
        from: Query<Option<DateTime<Utc>>>,
        /// End of the range (RFC 3339, exclusive), rounded up to a bucket.
        to: Query<Option<DateTime<Utc>>>,
        /// Only this feature.
        feature: Query<Option<FeatureName>>,
        /// IANA time zone of hour and day buckets, e.g. `America/New_York`
        /// (default: the tenant's).
        #[oai(validator(max_length = 64))]
        tz: Query<Option<String>>,
    ) -> Result<Found<TimeSeries>, ApiError> {
        auth.0.require_for(Scope::Read, &tenant)?;
        let asked_zone = match tz.0.as_deref() {
            Some(name) => Some(
                domain::validate::timezone(name)
                    .map_err(|refused| invalid("tz", refused.reason))?,
            ),
            None => None,
        };
        let db = &self.0.db;
        let Some(configured) = store::tenants::configuration(db, &tenant).await? else {
            return Err(ApiError::unknown_tenant(&tenant));
        };
        let zone = asked_zone.unwrap_or_else(|| configured.zone());
        let g = Granularity::from(granularity.0);
        let to_time = to.0.unwrap_or_else(Utc::now);
        let mut end = g.truncate(to_time, zone);
        if end < to_time || to.0.is_none() {
            end = g.next(end, zone);
        }
        let default_span = match g {
            Granularity::Minute => chrono::Duration::minutes(60),
            Granularity::Hour => chrono::Duration::hours(24),
            Granularity::Day => chrono::Duration::days(31),
        };
        let start = g.truncate(from.0.unwrap_or(end - default_span), zone);
        if start >= end {
            return Err(ApiError::bad_request(
                "invalid range",
                json!({ "reason": "`from` must be before `to`" }),
            ));
        }
        let buckets = (end - start).num_seconds() / g.step().num_seconds();
        if buckets > MAX_BUCKETS {
            return Err(ApiError::bad_request(
                "invalid range",
                json!({ "reason": format!("the range spans {buckets} buckets; at most {MAX_BUCKETS}") }),
            ));
        }
        let points =
            usage_query::time_series(db, &tenant, g, (start, end), feature.as_deref(), zone)
                .await?;
        Ok(Found::Ok(Json(TimeSeries {
            tenant: tenant.0.0,
            granularity: granularity.0,
            tz: zone.name().to_owned(),
            from: start,
            to: end,
            feature: feature.0.map(|f| f.0),
            points: points
                .into_iter()
                .map(|p| SeriesPoint {
                    start: p.start,
                    total_tokens: p.counts.tokens,
                    event_count: p.counts.events,
                    priced: PricedTokens::new(p.counts, p.cost, p.unpriced_tokens),
                })
                .collect(),
        })))
    }
}

fn default_granularity() -> GranularityParam {
    GranularityParam::Minute
}
