//! `/api/tenants/...`: tenant configuration (quota, billing day, alert
//! thresholds), its Slack webhook, and its alert history.
//!
//! Saving a tenant re-evaluates its alerts: raising the quota above current
//! usage re-arms (deletes, in the saving transaction, this period's alerts
//! for) the thresholds no longer crossed, so they fire again when usage
//! reaches them; lowering it fires those now crossed at once. That
//! evaluation runs after the COMMIT, as the pipeline's does, so that it also
//! sees tokens a replica committed meanwhile with the old settings in mind
//! (see `pipeline::alerts::evaluate`).

use chrono::{DateTime, Utc};
use entity::{alerts, period::BillingPeriod, slack_webhooks, tenants, usage::period_usage};
use pipeline::alerts::{evaluate::evaluate, slack, webhook};
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::Example,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, Statement, TransactionTrait, sea_query::LockType,
};
use serde_json::json;

use super::{
    ApiTags, check_tenant, invalid,
    rules::{DisplayName, TenantSlug},
};
use crate::{
    auth::{ApiKey, Scope},
    error::{ApiError, BodyError},
    state::AppState,
};

/// A tenant's configuration, as saved.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct TenantIn {
    /// Display name (defaults to the tenant id): 1–200 characters, not all
    /// white space.
    #[oai(nullable, validator(min_length = 1, max_length = 200))]
    pub name: Option<DisplayName>,
    /// Tokens per billing period.
    #[oai(validator(minimum(value = "1")))]
    pub monthly_quota: i64,
    /// Day of the month (1–28) a billing period starts, at 00:00 UTC.
    #[oai(nullable, validator(minimum(value = "1"), maximum(value = "28")))]
    pub billing_day: Option<i16>,
    /// Whole percents of the quota at which an alert fires (1–1000, at
    /// most 10, no repeats). Defaults to `FLAGMETER_ALERT_THRESHOLDS`.
    #[oai(
        nullable,
        validator(
            max_items = 10,
            unique_items = true,
            minimum(value = "1"),
            maximum(value = "1000")
        )
    )]
    pub alert_thresholds: Option<Vec<i32>>,
}

impl Example for TenantIn {
    fn example() -> Self {
        Self {
            name: Some(DisplayName("Acme Corp".to_owned())),
            monthly_quota: 100_000,
            billing_day: Some(1),
            alert_thresholds: Some(vec![80, 100]),
        }
    }
}

/// A tenant's configuration.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub monthly_quota: i64,
    pub billing_day: i16,
    pub alert_thresholds: Vec<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<tenants::Model> for Tenant {
    fn from(t: tenants::Model) -> Self {
        Self {
            id: t.id,
            name: t.name,
            monthly_quota: t.monthly_quota,
            billing_day: t.billing_day,
            alert_thresholds: t.alert_thresholds,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// One page of tenants, in id order.
#[derive(Debug, Object)]
pub struct TenantPage {
    pub tenants: Vec<Tenant>,
    pub limit: u64,
    pub offset: u64,
}

/// A Slack incoming webhook, as saved.
#[derive(Debug, Object)]
#[oai(example)]
pub struct WebhookIn {
    /// `https://hooks.slack.com/services/...` (hosts per
    /// `FLAGMETER_WEBHOOK_ALLOWED_HOSTS`).
    #[oai(validator(max_length = 2048))]
    pub url: String,
    /// Whether alerts are posted (default true).
    #[oai(nullable)]
    pub enabled: Option<bool>,
}

impl Example for WebhookIn {
    fn example() -> Self {
        Self {
            url: "https://hooks.slack.com/services/T000/B000/XXXX".to_owned(),
            enabled: Some(true),
        }
    }
}

/// A tenant's webhook, its secret part masked.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Webhook {
    pub url: String,
    pub enabled: bool,
    pub updated_at: DateTime<Utc>,
}

impl From<slack_webhooks::Model> for Webhook {
    fn from(w: slack_webhooks::Model) -> Self {
        Self {
            url: webhook::mask(&w.url),
            enabled: w.enabled,
            updated_at: w.updated_at,
        }
    }
}

/// Where an alert is in its life.
#[derive(Debug, Enum)]
#[oai(rename_all = "snake_case")]
pub enum AlertStatus {
    Pending,
    Delivered,
    Failed,
    NoWebhook,
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

/// One quota alert.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Alert {
    pub id: i64,
    /// Percent of the quota crossed.
    pub threshold: i32,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// Tokens used in the period when it fired.
    pub usage_tokens: i64,
    /// The quota when it fired.
    pub quota: i64,
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
}

impl From<alerts::Model> for Alert {
    fn from(a: alerts::Model) -> Self {
        Self {
            id: a.id,
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
        }
    }
}

/// What Slack answered to the test message.
#[derive(Debug, Object)]
pub struct WebhookTest {
    pub delivered: bool,
    /// Slack's answer, or why nothing was delivered.
    pub detail: String,
}

#[derive(ApiResponse)]
enum SaveTenantResponse {
    /// Updated.
    #[oai(status = 200)]
    Updated(Json<Tenant>),
    /// Created.
    #[oai(status = 201)]
    Created(Json<Tenant>),
}

#[derive(ApiResponse)]
enum TenantResponse {
    /// The tenant.
    #[oai(status = 200)]
    Ok(Json<Tenant>),
}

#[derive(ApiResponse)]
enum TenantPageResponse {
    /// A page of tenants.
    #[oai(status = 200)]
    Ok(Json<TenantPage>),
}

#[derive(ApiResponse)]
enum DeletedResponse {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

#[derive(ApiResponse)]
enum WebhookResponse {
    /// The webhook, masked.
    #[oai(status = 200)]
    Ok(Json<Webhook>),
}

#[derive(ApiResponse)]
enum AlertsResponse {
    /// Newest first.
    #[oai(status = 200)]
    Ok(Json<Vec<Alert>>),
}

#[derive(ApiResponse)]
enum WebhookTestResponse {
    /// The test message was sent (or not); `detail` has Slack's answer.
    #[oai(status = 200)]
    Ok(Json<WebhookTest>),
}

pub struct TenantsApi {
    state: AppState,
}

impl TenantsApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    async fn existing(&self, tenant: &str) -> Result<tenants::Model, ApiError> {
        check_tenant(tenant)?;
        tenants::Entity::find_by_id(tenant)
            .one(&self.state.db)
            .await?
            .ok_or_else(|| ApiError::unknown_tenant(tenant))
    }

    /// The tenant and its webhook; 404 if either is missing.
    async fn with_webhook(
        &self,
        tenant: &str,
    ) -> Result<(tenants::Model, slack_webhooks::Model), ApiError> {
        let existing = self.existing(tenant).await?;
        let hook = slack_webhooks::Entity::find_by_id(existing.id.as_str())
            .one(&self.state.db)
            .await?
            .ok_or_else(|| no_webhook(tenant))?;
        Ok((existing, hook))
    }
}

/// Deletes this period's alerts whose threshold the usage no longer reaches
/// (after a quota raise). The caller evaluates once this is committed.
async fn rearm<C: ConnectionTrait>(
    db: &C,
    tenant: tenants::Model,
    now: DateTime<Utc>,
) -> Result<(), sea_orm::DbErr> {
    let period = BillingPeriod::containing(now, tenant.billing_day);
    let id = tenant.id.clone();
    let quota = tenant.monthly_quota;
    let usage = period_usage(db, vec![tenant], now)
        .await?
        .pop()
        .map_or(0, |u| u.total_tokens());
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "DELETE FROM alerts WHERE tenant = $1 AND period_start = $2
             AND threshold::numeric * $3::numeric > $4::numeric * 100",
        [id.into(), period.start.into(), quota.into(), usage.into()],
    ))
    .await?;
    Ok(())
}

#[OpenApi(tag = "ApiTags::Tenants")]
impl TenantsApi {
    /// Create or update a tenant's quota, billing day and alert thresholds.
    #[oai(path = "/api/tenants/:tenant", method = "put")]
    async fn save(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
        body: Json<TenantIn>,
    ) -> Result<SaveTenantResponse, BodyError> {
        auth.0.require(Scope::Admin)?;
        check_tenant(&tenant)?;
        if let Some(name) = &body.name
            && name.trim().is_empty()
        {
            return Err(invalid("name", "must not be blank").into());
        }
        let now = Utc::now();
        let txn = self.state.db.begin().await?;
        let current = tenants::Entity::find_by_id(tenant.as_str())
            .lock(LockType::Update)
            .one(&txn)
            .await?;
        let created = current.is_none();
        let mut row: tenants::ActiveModel = match current {
            Some(model) => model.into(),
            None => tenants::ActiveModel {
                id: Set(tenant.as_str().to_owned()),
                name: Set(tenant.as_str().to_owned()),
                billing_day: Set(1),
                alert_thresholds: Set(self.state.default_thresholds.clone()),
                created_at: Set(now),
                ..Default::default()
            },
        };
        if let Some(name) = &body.name {
            row.name = Set(name.trim().to_owned());
        }
        row.monthly_quota = Set(body.monthly_quota);
        if let Some(day) = body.billing_day {
            row.billing_day = Set(day);
        }
        if let Some(thresholds) = &body.alert_thresholds {
            let mut sorted = thresholds.clone();
            sorted.sort_unstable();
            row.alert_thresholds = Set(sorted);
        }
        row.updated_at = Set(now);
        let saved = if created {
            row.insert(&txn).await?
        } else {
            row.update(&txn).await?
        };
        rearm(&txn, saved.clone(), now).await?;
        txn.commit().await?;
        evaluate(&self.state.db, std::slice::from_ref(&saved.id), now).await?;
        Ok(if created {
            SaveTenantResponse::Created(Json(saved.into()))
        } else {
            SaveTenantResponse::Updated(Json(saved.into()))
        })
    }

    /// A tenant's configuration.
    #[oai(path = "/api/tenants/:tenant", method = "get")]
    async fn get(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
    ) -> Result<TenantResponse, ApiError> {
        auth.0.require(Scope::Admin)?;
        Ok(TenantResponse::Ok(Json(
            self.existing(&tenant).await?.into(),
        )))
    }

    /// Every tenant's configuration, a page at a time, in id order.
    #[oai(path = "/api/tenants", method = "get")]
    async fn list(
        &self,
        auth: ApiKey,
        /// Most tenants to return (1–1000).
        #[oai(
            default = "default_page",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u64>,
        /// Tenants to skip (at most 2^53 − 1, the largest
        /// integer every JSON client holds exactly; the database's limit is
        /// 2^63 − 1).
        #[oai(
            default,
            validator(minimum(value = "0"), maximum(value = "9007199254740991"))
        )]
        offset: Query<u64>,
    ) -> Result<TenantPageResponse, ApiError> {
        auth.0.require(Scope::Admin)?;
        let tenants = tenants::Entity::find()
            .order_by_asc(tenants::Column::Id)
            .limit(limit.0)
            .offset(offset.0)
            .all(&self.state.db)
            .await?;
        Ok(TenantPageResponse::Ok(Json(TenantPage {
            tenants: tenants.into_iter().map(Tenant::from).collect(),
            limit: limit.0,
            offset: offset.0,
        })))
    }

    /// Delete a tenant's configuration and webhook. Its usage history and
    /// alert history stay; a later event recreates it with the defaults.
    #[oai(path = "/api/tenants/:tenant", method = "delete")]
    async fn delete(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
    ) -> Result<DeletedResponse, ApiError> {
        auth.0.require(Scope::Admin)?;
        let existing = self.existing(&tenant).await?;
        tenants::Entity::delete_by_id(existing.id)
            .exec(&self.state.db)
            .await?;
        Ok(DeletedResponse::Deleted)
    }

    /// Set the Slack incoming webhook alerts are posted to.
    #[oai(path = "/api/tenants/:tenant/slack-webhook", method = "put")]
    async fn put_webhook(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
        body: Json<WebhookIn>,
    ) -> Result<WebhookResponse, BodyError> {
        auth.0.require(Scope::Admin)?;
        let existing = self.existing(&tenant).await?;
        let url = self
            .state
            .webhook_policy
            .check(&body.url)
            .map_err(|refused| invalid("url", refused))?;
        let now = Utc::now();
        let row = slack_webhooks::ActiveModel {
            tenant: Set(existing.id),
            url: Set(url.to_string()),
            enabled: Set(body.enabled.unwrap_or(true)),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let saved = slack_webhooks::Entity::insert(row)
            .on_conflict(
                sea_orm::sea_query::OnConflict::column(slack_webhooks::Column::Tenant)
                    .update_columns([
                        slack_webhooks::Column::Url,
                        slack_webhooks::Column::Enabled,
                        slack_webhooks::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_with_returning(&self.state.db)
            .await?;
        Ok(WebhookResponse::Ok(Json(saved.into())))
    }

    /// The tenant's webhook, its secret part masked.
    #[oai(path = "/api/tenants/:tenant/slack-webhook", method = "get")]
    async fn get_webhook(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
    ) -> Result<WebhookResponse, ApiError> {
        auth.0.require(Scope::Admin)?;
        let (_, hook) = self.with_webhook(&tenant).await?;
        Ok(WebhookResponse::Ok(Json(hook.into())))
    }

    /// Remove the tenant's webhook: alerts are then recorded as `no_webhook`.
    #[oai(path = "/api/tenants/:tenant/slack-webhook", method = "delete")]
    async fn delete_webhook(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
    ) -> Result<DeletedResponse, ApiError> {
        auth.0.require(Scope::Admin)?;
        let existing = self.existing(&tenant).await?;
        let deleted = slack_webhooks::Entity::delete_by_id(existing.id)
            .exec(&self.state.db)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(no_webhook(&tenant));
        }
        Ok(DeletedResponse::Deleted)
    }

    /// Send a test message to the tenant's webhook and report Slack's answer.
    #[oai(path = "/api/tenants/:tenant/slack-webhook/test", method = "post")]
    async fn test_webhook(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
    ) -> Result<WebhookTestResponse, ApiError> {
        auth.0.require(Scope::Admin)?;
        let (existing, hook) = self.with_webhook(&tenant).await?;
        let url = self
            .state
            .webhook_policy
            .check(&hook.url)
            .map_err(|refused| invalid("url", refused))?;
        let answer = self
            .state
            .slack
            .post(url, &slack::test_payload(&existing.name))
            .await;
        let (delivered, detail) = match answer {
            slack::Answer::Delivered => (true, "Slack accepted the message".to_owned()),
            slack::Answer::RateLimited(_) => (false, "429 rate limited by Slack".to_owned()),
            slack::Answer::Transient(detail) | slack::Answer::Permanent(detail) => (false, detail),
        };
        Ok(WebhookTestResponse::Ok(Json(WebhookTest {
            delivered,
            detail,
        })))
    }

    /// The tenant's quota alerts, newest first.
    #[oai(path = "/api/tenants/:tenant/alerts", method = "get")]
    async fn alerts(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
        /// Most alerts to return (1–1000).
        #[oai(
            default = "default_page",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u64>,
    ) -> Result<AlertsResponse, ApiError> {
        auth.0.require(Scope::Admin)?;
        check_tenant(&tenant)?;
        let rows = alerts::Entity::find()
            .filter(alerts::Column::Tenant.eq(tenant.as_str()))
            .order_by_desc(alerts::Column::CreatedAt)
            .order_by_desc(alerts::Column::Id)
            .limit(limit.0)
            .all(&self.state.db)
            .await?;
        if rows.is_empty()
            && tenants::Entity::find_by_id(tenant.as_str())
                .one(&self.state.db)
                .await?
                .is_none()
        {
            return Err(ApiError::unknown_tenant(&tenant));
        }
        Ok(AlertsResponse::Ok(Json(
            rows.into_iter().map(Alert::from).collect(),
        )))
    }
}

fn no_webhook(tenant: &str) -> ApiError {
    ApiError::NotFound(crate::error::ErrorBody::new(
        "no webhook",
        Some(json!({ "tenant": tenant })),
    ))
}

/// Page size of the tenant and alert lists when none is asked for.
fn default_page() -> u64 {
    100
}
