//! `/api/tenants/{tenant}/alerts`: a tenant's alert history, newest first,
//! with each destination's delivery side by side (`slack`, `webhook`) and
//! one `status` summing them up, so that an alert delivered to the signed
//! webhook of a tenant without Slack reads `delivered`, not "no webhook".
//! It outlives a deleted tenant's configuration: what was sent stays on
//! record.

use ::alerts::alert_event::MESSAGE_ID_PREFIX;
use chrono::{DateTime, Utc};
use entity::alerts;
use poem_openapi::{Enum, Object, OpenApi, param::Path, payload::Json};
use sea_orm::{
    ColumnTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
    Statement, prelude::Uuid,
};

use crate::{
    auth::{ApiKey, Scope},
    error::ApiError,
    routes::Found,
    routes::{ApiTags, paging::Limit, rules::TenantSlug},
    state::AppState,
};

/// Where an alert, or one destination's delivery of it, is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum AlertStatus {
    /// Due, or waiting for its next attempt.
    Pending,
    /// Accepted by the destination (for an alert: by every destination it
    /// had).
    Delivered,
    /// Given up on (for an alert: by at least one destination).
    Failed,
    /// No such webhook configured, so nothing sent there (for an alert:
    /// neither Slack nor a signed webhook).
    NoWebhook,
}

impl AlertStatus {
    /// A delivery row's status, as the database constrains it.
    fn parse(text: &str) -> Self {
        match text {
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            "no_webhook" => Self::NoWebhook,
            _ => Self::Pending,
        }
    }
}

impl From<alerts::Status> for AlertStatus {
    fn from(status: alerts::Status) -> Self {
        match status {
            alerts::Status::Pending => Self::Pending,
            alerts::Status::Delivered => Self::Delivered,
            alerts::Status::Failed => Self::Failed,
            alerts::Status::NoWebhook => Self::NoWebhook,
        }
    }
}

impl AlertStatus {
    /// An alert's status from its destinations': pending while any is,
    /// then failed if any gave up, delivered if any took it, and
    /// `no_webhook` only when it had nowhere to go.
    fn overall(destinations: [Self; 2]) -> Self {
        [Self::Pending, Self::Failed, Self::Delivered]
            .into_iter()
            .find(|status| destinations.contains(status))
            .unwrap_or(Self::NoWebhook)
    }
}

/// An alert's delivery to one destination.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Delivery {
    /// `no_webhook`: the tenant had no such webhook enabled, nothing was
    /// sent there.
    pub status: AlertStatus,
    /// Delivery attempts so far.
    pub attempts: i32,
    #[oai(skip_serializing_if_is_none)]
    pub last_error: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub delivered_at: Option<DateTime<Utc>>,
    /// When a pending delivery is tried next.
    #[oai(skip_serializing_if_is_none)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The signed webhook's `webhook-id` (`msg_` and a UUIDv7), the same
    /// on every attempt: what the receiver deduplicates by.
    #[oai(skip_serializing_if_is_none)]
    pub webhook_id: Option<String>,
}

impl Delivery {
    /// For a destination that had no webhook when the alert fired.
    fn none() -> Self {
        Self {
            status: AlertStatus::NoWebhook,
            attempts: 0,
            last_error: None,
            delivered_at: None,
            next_attempt_at: None,
            webhook_id: None,
        }
    }
}

#[derive(FromQueryResult)]
struct DeliveryRow {
    alert_id: i64,
    status: String,
    attempts: i32,
    last_error: Option<String>,
    delivered_at: Option<DateTime<Utc>>,
    next_attempt_at: DateTime<Utc>,
}

impl Delivery {
    /// The signed webhook's delivery of the alert `message_id`.
    fn of_webhook(d: DeliveryRow, message_id: Uuid) -> Self {
        Self {
            status: AlertStatus::parse(&d.status),
            attempts: d.attempts,
            last_error: d.last_error,
            delivered_at: d.delivered_at,
            next_attempt_at: Some(d.next_attempt_at),
            webhook_id: Some(format!("{MESSAGE_ID_PREFIX}{message_id}")),
        }
    }

    /// Slack's delivery: the alert row's own state.
    fn of_slack(a: &alerts::Model) -> Self {
        Self {
            status: a.status.into(),
            attempts: a.attempts,
            last_error: a.last_error.clone(),
            delivered_at: a.delivered_at,
            next_attempt_at: Some(a.next_attempt_at),
            webhook_id: None,
        }
    }
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum AlertKind {
    /// Tokens crossed a threshold of the monthly quota.
    Quota,
    /// Cost crossed a threshold of the monthly budget.
    Budget,
}

impl From<alerts::Kind> for AlertKind {
    fn from(kind: alerts::Kind) -> Self {
        match kind {
            alerts::Kind::Quota => Self::Quota,
            alerts::Kind::Budget => Self::Budget,
        }
    }
}

/// One quota or budget alert.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Alert {
    pub id: i64,
    /// `quota` (tokens against the quota) or `budget` (cost against the
    /// budget).
    pub kind: AlertKind,
    /// Percent of the quota (or budget) crossed.
    pub threshold: i32,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// Tokens used in the period when it fired.
    pub usage_tokens: i64,
    /// The quota when it fired.
    pub quota: i64,
    /// A budget alert's cost when it fired (decimal string).
    #[oai(skip_serializing_if_is_none)]
    pub cost: Option<String>,
    /// A budget alert's budget when it fired (decimal string).
    #[oai(skip_serializing_if_is_none)]
    pub budget: Option<String>,
    /// The currency of a budget alert's cost and budget.
    #[oai(skip_serializing_if_is_none)]
    pub currency: Option<String>,
    /// All destinations together: `pending` while any delivery is,
    /// `failed` if any gave up, `delivered` once every destination the
    /// tenant had took it, `no_webhook` if it had none (neither Slack nor
    /// a signed webhook). Each destination's own state is in `slack` and
    /// `webhook`.
    pub status: AlertStatus,
    pub created_at: DateTime<Utc>,
    /// The delivery to the tenant's Slack webhook.
    pub slack: Delivery,
    /// The delivery to the tenant's signed webhook.
    pub webhook: Delivery,
    /// Slack's delivery attempts (as `slack.attempts`).
    #[oai(deprecated)]
    pub attempts: i32,
    /// Slack's last error (as `slack.lastError`).
    #[oai(deprecated, skip_serializing_if_is_none)]
    pub last_error: Option<String>,
    /// When Slack took it (as `slack.deliveredAt`).
    #[oai(deprecated, skip_serializing_if_is_none)]
    pub delivered_at: Option<DateTime<Utc>>,
    /// When Slack's delivery is tried next (as `slack.nextAttemptAt`).
    #[oai(deprecated)]
    pub next_attempt_at: DateTime<Utc>,
}

impl Alert {
    /// `a` with its signed webhook's delivery, if the tenant had one; a
    /// budget alert's figures are in `currency`.
    fn new(a: alerts::Model, webhook: Option<DeliveryRow>, currency: &str) -> Self {
        let slack = Delivery::of_slack(&a);
        let webhook =
            webhook.map_or_else(Delivery::none, |d| Delivery::of_webhook(d, a.message_id));
        Self {
            id: a.id,
            kind: a.kind.into(),
            currency: a.cost.is_some().then(|| currency.to_owned()),
            cost: a.cost,
            budget: a.budget,
            threshold: a.threshold,
            period_start: a.period_start,
            period_end: a.period_end,
            usage_tokens: a.usage_tokens,
            quota: a.quota,
            status: AlertStatus::overall([slack.status, webhook.status]),
            created_at: a.created_at,
            attempts: a.attempts,
            last_error: a.last_error,
            delivered_at: a.delivered_at,
            next_attempt_at: a.next_attempt_at,
            slack,
            webhook,
        }
    }
}

/// The routes below, over the shared state.
pub struct AlertHistoryApi(pub AppState);

#[OpenApi(tag = "ApiTags::Tenants")]
impl AlertHistoryApi {
    /// The tenant's quota and budget alerts, newest first.
    #[oai(
        path = "/api/tenants/:tenant/alerts",
        method = "get",
        operation_id = "listAlerts"
    )]
    async fn alerts(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
        /// Most alerts to return (1–1000).
        limit: Limit,
    ) -> Result<Found<Vec<Alert>>, ApiError> {
        auth.0.require(Scope::Admin)?;
        let rows = alerts::Entity::find()
            .filter(alerts::Column::Tenant.eq(tenant.as_str()))
            .order_by_desc(alerts::Column::CreatedAt)
            .order_by_desc(alerts::Column::Id)
            .limit(limit.0)
            .all(&self.0.db)
            .await?;
        if rows.is_empty()
            && store::tenants::configuration(&self.0.db, &tenant)
                .await?
                .is_none()
        {
            return Err(ApiError::unknown_tenant(&tenant));
        }
        let ids: Vec<i64> = rows.iter().map(|a| a.id).collect();
        let mut deliveries: std::collections::HashMap<i64, DeliveryRow> =
            DeliveryRow::find_by_statement(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT alert_id, status, attempts, last_error, delivered_at, next_attempt_at
                 FROM webhook_deliveries WHERE alert_id = ANY ($1)",
                [ids.into()],
            ))
            .all(&self.0.db)
            .await?
            .into_iter()
            .map(|d| (d.alert_id, d))
            .collect();
        let history = rows
            .into_iter()
            .map(|a| {
                let webhook = deliveries.remove(&a.id);
                Alert::new(a, webhook, &self.0.currency)
            })
            .collect();
        Ok(Found::Ok(Json(history)))
    }
}
