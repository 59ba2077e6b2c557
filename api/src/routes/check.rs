//! `GET /api/usage/{tenant}/check?tokens=N`: may this tenant make a call of
//! N tokens? Fast enough to sit in front of every model call.
//!
//! It answers from the tenant's limits in Valkey ([`crate::limits`]), in
//! one round trip: counted usage as last read from PostgreSQL (read again
//! in the background once older than `FLAGMETER_USAGE_CACHE_MS`), plus the
//! events accepted and not yet counted, plus live reservations, so that
//! parallel callers no longer all see the same room. A check holds
//! nothing: to be sure of the room, reserve it (`POST /api/reservations`).
//! `asOf` says when counted usage was read, `lagMs` how far counting
//! trails acceptance.

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
    limits::{Figures, LimitKind, LimitState, Status, explain},
    state::AppState,
};

/// The answer to "may this tenant use N more tokens?".
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Check {
    pub tenant: String,
    /// Whether usage (counted, and accepted but not yet counted), live
    /// reservations and `tokens` stay within the quota, the cost is below
    /// the budget (if the tenant has one), and one more request of
    /// `tokens` fits the per-minute limits (if it has any).
    pub allowed: bool,
    /// The quota minus usage and live reservations (negative once over
    /// it).
    pub remaining_tokens: i64,
    /// Usage (counted, and accepted but not yet counted) as a percentage
    /// of the quota, to two decimals.
    pub quota_percent: f64,
    /// The budget minus the cost of usage and live reservations (decimal
    /// string; negative once over it); present only if the tenant has a
    /// budget.
    #[oai(skip_serializing_if_is_none)]
    pub remaining_budget: Option<String>,
    /// When counted usage was read from PostgreSQL.
    pub as_of: DateTime<Utc>,
    /// How far the counted figures may trail what was accepted: the age in
    /// milliseconds of the oldest accepted event not yet counted; 0 when
    /// none is waiting.
    pub lag_ms: u64,
    /// Every limit of the tenant, with what is used, reserved and left of
    /// it, and when it resets.
    pub limits: Vec<LimitState>,
    /// The limit with no room for the call, when `allowed` is false (of
    /// several, the one with room last).
    #[oai(skip_serializing_if_is_none)]
    pub blocked_by: Option<LimitKind>,
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
        let figures = self.0.limits.check(&self.0, &tenant, tokens.0).await?;
        let lag_ms = self.0.lag.ms(self.0.clock.now().timestamp_millis());
        Ok(Found::Ok(Json(answer(tenant.0.0, &figures, lag_ms))))
    }
}

/// The check's answer from the figures of one atomic step.
fn answer(tenant: String, figures: &Figures, lag_ms: u64) -> Check {
    let explained = explain(figures);
    let remaining_budget = figures.budget_micros.map(|budget| {
        Amount::from_micros(budget - figures.used_cost - figures.reserved_cost).to_string()
    });
    Check {
        tenant,
        allowed: figures.status == Status::Allowed,
        remaining_tokens: figures.quota - figures.used_tokens - figures.reserved_tokens,
        quota_percent: percent(figures.used_tokens, figures.quota),
        remaining_budget,
        as_of: explained.as_of.unwrap_or_default(),
        lag_ms,
        limits: explained.limits,
        blocked_by: explained.blocked_by,
    }
}

/// `part` as a percentage of `whole`, to two decimals.
fn percent(part: i64, whole: i64) -> f64 {
    let percent = part as f64 * 100.0 / whole.max(1) as f64;
    (percent * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::script::Window;

    #[test]
    fn the_existing_fields_count_what_is_in_flight_and_reserved() {
        let figures = Figures {
            status: Status::Refused,
            now_ms: 1_000,
            expires_ms: None,
            known: true,
            base_read_ms: Some(900),
            period_start_ms: 0,
            period_end_ms: 10_000,
            quota: 1_000,
            budget_micros: Some(5_000_000),
            tokens_per_minute: None,
            requests_per_minute: None,
            used_tokens: 901,
            reserved_tokens: 100,
            used_cost: 4_000_000,
            reserved_cost: 1_250_000,
            window: Window::default(),
            blocked: 1,
            tokens_per_minute_room_ms: None,
            requests_per_minute_room_ms: None,
            expired: 0,
        };
        let check = answer("acme".into(), &figures, 7);
        assert!(!check.allowed);
        assert_eq!(check.remaining_tokens, -1);
        assert_eq!(check.quota_percent, 90.1);
        assert_eq!(check.remaining_budget.as_deref(), Some("-0.250000"));
        assert_eq!(check.blocked_by, Some(LimitKind::Quota));
        assert_eq!(check.limits.len(), 2);
    }
}
