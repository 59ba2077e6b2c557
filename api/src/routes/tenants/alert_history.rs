//! `/api/tenants/{tenant}/alerts`: a tenant's alert history, newest first,
//! with each alert's Slack delivery (the alert's own `status`, `attempts`,
//! ...) and, when the tenant had a signed webhook, that delivery too
//! (`webhook`). It outlives a deleted tenant's configuration: what was sent
//! stays on record.

use chrono::{DateTime, Utc};
use entity::alerts;
use poem_openapi::{Enum, Object, OpenApi, param::Path, payload::Json};
use sea_orm::{
    ColumnTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
    Statement,
};

use crate::{
    auth::{ApiKey, Scope},
    error::ApiError,
    routes::Found,
    routes::{ApiTags, paging::Limit, rules::TenantSlug},
    state::AppState,
};

/// Where an alert is in its life.
#[derive(Debug, Enum)]
#[oai(rename_all = "snake_case")]
pub enum AlertStatus {
    Pending,
    Delivered,
    Failed,
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

/// An alert's delivery to the tenant's signed webhook.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct WebhookDelivery {
    pub status: AlertStatus,
    /// Delivery attempts so far.
    pub attempts: i32,
    #[oai(skip_serializing_if_is_none)]
    pub last_error: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub delivered_at: Option<DateTime<Utc>>,
    /// When a pending delivery is tried next.
    pub next_attempt_at: DateTime<Utc>,
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

impl From<DeliveryRow> for WebhookDelivery {
    fn from(d: DeliveryRow) -> Self {
        Self {
            status: AlertStatus::parse(&d.status),
            attempts: d.attempts,
            last_error: d.last_error,
            delivered_at: d.delivered_at,
            next_attempt_at: d.next_attempt_at,
        }
    }
}

/// What an alert is about.
#[derive(Debug, Enum)]
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
    pub status: AlertStatus,
    /// Delivery attempts so far.
    pub attempts: i32,
    #[oai(skip_serializing_if_is_none)]
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub delivered_at: Option<DateTime<Utc>>,
    /// When a pending alert is tried next.
    pub next_attempt_at: DateTime<Utc>,
    /// The delivery to the tenant's signed webhook, if it had one.
    #[oai(skip_serializing_if_is_none)]
    pub webhook: Option<WebhookDelivery>,
}

impl From<alerts::Model> for Alert {
    fn from(a: alerts::Model) -> Self {
        Self {
            id: a.id,
            kind: a.kind.into(),
            cost: a.cost,
            budget: a.budget,
            threshold: a.threshold,
            period_start: a.period_start,
            period_end: a.period_end,
            usage_tokens: a.usage_tokens,
            quota: a.quota,
            status: a.status.into(),
            attempts: a.attempts,
            last_error: a.last_error,
            created_at: a.created_at,
            delivered_at: a.delivered_at,
            next_attempt_at: a.next_attempt_at,
            webhook: None,
        }
    }
}

/// The routes below, over the shared state.
pub struct AlertHistoryApi(pub AppState);

#[OpenApi(tag = "ApiTags::Tenants")]
impl AlertHistoryApi {
    /// The tenant's quota and budget alerts, newest first.
    #[oai(path = "/api/tenants/:tenant/alerts", method = "get")]
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
                let webhook = deliveries.remove(&a.id).map(WebhookDelivery::from);
                Alert {
                    webhook,
                    ..Alert::from(a)
                }
            })
            .collect();
        Ok(Found::Ok(Json(history)))
    }
}
