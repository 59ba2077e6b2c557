//! `GET /api/usage/{tenant}/check?tokens=N`: may this tenant make a call of
//! N tokens? Fast enough to sit in front of every model call.
//!
//! It answers from the usage cache the usage route shares (one PostgreSQL
//! read per tenant per `FLAGMETER_USAGE_CACHE_MS`, however many checks ask,
//! and read again in the background while the previous figures answer:
//! [`crate::usage_cache::UsageCache::get_or_stale`]) and the pipeline's lag
//! sampled in the background ([`crate::lag`]), so a check waits for no round
//! trip of its own. `asOf` and `lagMs` say how fresh
//! the figures are: usage counted up to `lagMs` behind acceptance, read at
//! `asOf`.

use chrono::{DateTime, Utc};
use domain::money::Amount;
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};

use super::{ApiTags, Found, rules::TenantSlug};
use crate::{
    auth::{ApiKey, Scope},
    error::ApiError,
    state::AppState,
};

/// The answer to "may this tenant use N more tokens?".
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Check {
    pub tenant: String,
    /// Whether counted usage plus `tokens` stays within the quota, and the
    /// cost is below the budget (if the tenant has one).
    pub allowed: bool,
    /// The quota minus counted usage (negative once over it).
    pub remaining_tokens: i64,
    /// Counted usage as a percentage of the quota, to two decimals.
    pub quota_percent: f64,
    /// The budget minus the cost so far (decimal string; negative once
    /// over it); present only if the tenant has a budget.
    #[oai(skip_serializing_if_is_none)]
    pub remaining_budget: Option<String>,
    /// When the figures were read from PostgreSQL.
    pub as_of: DateTime<Utc>,
    /// How far the counted figures may trail what was accepted: the age in
    /// milliseconds of the oldest accepted event not yet counted; 0 when
    /// none is waiting.
    pub lag_ms: u64,
}

/// The route below, over the shared state.
pub struct CheckApi(pub AppState);

#[OpenApi(tag = "ApiTags::Usage")]
impl CheckApi {
    /// Whether a tenant may use `tokens` more tokens now (an entitlement
    /// check). A tenant never seen is answered as a new tenant: the default
    /// quota, no usage.
    #[oai(
        path = "/api/usage/:tenant/check",
        method = "get",
        operation_id = "checkUsage"
    )]
    async fn check(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
        /// Tokens the call is about to use (0–1,000,000,000; default 0).
        #[oai(
            default,
            validator(minimum(value = "0"), maximum(value = "1000000000"))
        )]
        tokens: Query<i64>,
    ) -> Result<Found<Check>, ApiError> {
        auth.0.require_for(Scope::Read, &tenant)?;
        let snapshot = self.0.usage_cache.get_or_stale(&tenant, &self.0.db).await?;
        let lag_ms = self.0.lag.ms(self.0.clock.now().timestamp_millis());
        let check = match snapshot {
            Some(snapshot) => {
                let usage = &snapshot.usage;
                let used = usage.total_tokens();
                let quota = usage.tenant.monthly_quota;
                let remaining_budget = usage.budget().map(|b| b.amount() - usage.cost());
                Check {
                    tenant: tenant.0.0,
                    allowed: within_quota(used, tokens.0, quota)
                        && remaining_budget.is_none_or(|left| left > Amount::ZERO),
                    remaining_tokens: quota - used,
                    quota_percent: usage.quota_percent(),
                    remaining_budget: remaining_budget.map(|left| left.to_string()),
                    as_of: snapshot.read_at,
                    lag_ms,
                }
            }
            None => Check {
                tenant: tenant.0.0,
                allowed: within_quota(0, tokens.0, self.0.default_quota),
                remaining_tokens: self.0.default_quota,
                quota_percent: 0.0,
                remaining_budget: None,
                as_of: Utc::now(),
                lag_ms,
            },
        };
        Ok(Found::Ok(Json(check)))
    }
}

/// Whether `used + more` stays within `quota` (in i128: no overflow).
fn within_quota(used: i64, more: i64, quota: i64) -> bool {
    i128::from(used) + i128::from(more) <= i128::from(quota)
}

#[cfg(test)]
mod tests {
    use super::within_quota;

    #[test]
    fn the_quota_edge_is_allowed_and_one_past_it_is_not() {
        assert!(within_quota(900, 100, 1_000));
        assert!(!within_quota(900, 101, 1_000));
        assert!(within_quota(1_000, 0, 1_000));
        assert!(!within_quota(1_001, 0, 1_000));
        assert!(within_quota(0, 0, i64::MAX));
    }
}
