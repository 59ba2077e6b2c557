//! `/api/tenants/...`, one route group a concept: a tenant's configuration
//! ([`config`]), its Slack webhook ([`slack_webhook`]), its signed webhook
//! ([`webhook`]) and its alert history ([`alert_history`]). They share the
//! lookup of the tenant they name, and the two webhooks the lookup,
//! allow-list check and deletion of their row.

mod alert_history;
mod config;
mod slack_webhook;
mod webhook;

pub use alert_history::AlertHistoryApi;
pub use config::TenantConfigApi;
pub use slack_webhook::SlackWebhookApi;
pub use webhook::SignedWebhookApi;

use entity::tenants;
use poem_openapi::ApiResponse;
use sea_orm::{DatabaseConnection, EntityTrait, PrimaryKeyTrait};
use serde_json::json;

use crate::{
    auth::{ApiKey, Scope},
    error::ApiError,
    routes::{invalid, rules::TenantSlug},
    state::AppState,
};

/// The configured tenant an admin route names: 403 without the admin scope,
/// then the 404 every tenant route answers for a tenant it does not know.
async fn admin_tenant(
    db: &DatabaseConnection,
    auth: &ApiKey,
    tenant: &TenantSlug,
) -> Result<tenants::Model, ApiError> {
    auth.0.require(Scope::Admin)?;
    tenants::Entity::find_by_id(tenant.as_str())
        .one(db)
        .await?
        .ok_or_else(|| ApiError::unknown_tenant(tenant))
}

#[derive(ApiResponse)]
enum DeletedResponse {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

/// The 404 of a webhook route when the tenant has no such webhook.
fn no_webhook(tenant: &str) -> ApiError {
    ApiError::NotFound(crate::error::ErrorBody::new(
        "no webhook",
        Some(json!({ "tenant": tenant })),
    ))
}

/// A webhook URL the allow-list takes, as it is stored; a 400 naming `url`
/// if it is refused.
fn allowed_url(state: &AppState, raw: &str) -> Result<String, ApiError> {
    let url = state
        .webhook_policy
        .check(raw)
        .map_err(|refused| invalid("url", refused))?;
    Ok(url.to_string())
}

/// The tenant an admin route names and its row of a per-tenant webhook
/// table `E`: 404 for an unknown tenant or a missing row.
async fn webhook_row<E>(
    db: &DatabaseConnection,
    auth: &ApiKey,
    tenant: &TenantSlug,
) -> Result<(tenants::Model, E::Model), ApiError>
where
    E: EntityTrait,
    String: Into<<E::PrimaryKey as PrimaryKeyTrait>::ValueType>,
{
    let existing = admin_tenant(db, auth, tenant).await?;
    let hook = E::find_by_id(existing.id.clone())
        .one(db)
        .await?
        .ok_or_else(|| no_webhook(tenant))?;
    Ok((existing, hook))
}

/// Deletes the tenant's row of a per-tenant webhook table `E`: 404 for an
/// unknown tenant or a missing row.
async fn delete_webhook_row<E>(
    db: &DatabaseConnection,
    auth: &ApiKey,
    tenant: &TenantSlug,
) -> Result<DeletedResponse, ApiError>
where
    E: EntityTrait,
    String: Into<<E::PrimaryKey as PrimaryKeyTrait>::ValueType>,
{
    let existing = admin_tenant(db, auth, tenant).await?;
    let deleted = E::delete_by_id(existing.id).exec(db).await?;
    if deleted.rows_affected == 0 {
        return Err(no_webhook(tenant));
    }
    Ok(DeletedResponse::Deleted)
}
