//! `/api/tenants/...`, one route group a concept: a tenant's configuration
//! ([`config`]), its Slack webhook ([`slack_webhook`]), its signed webhook
//! ([`webhook`]) and its alert history ([`alert_history`]). They share the
//! lookup of the tenant they name.

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

use crate::{error::ApiError, routes::rules::TenantSlug};

/// The configured tenant, or the 404 every tenant route answers.
async fn tenant_or_404(
    db: &DatabaseConnection,
    tenant: &TenantSlug,
) -> Result<tenants::Model, ApiError> {
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

/// Deletes the tenant's row of a per-tenant table (a webhook): 404 for an
/// unknown tenant or a missing row.
async fn delete_tenant_row<E>(
    db: &DatabaseConnection,
    tenant: &TenantSlug,
) -> Result<DeletedResponse, ApiError>
where
    E: EntityTrait,
    String: Into<<E::PrimaryKey as PrimaryKeyTrait>::ValueType>,
{
    let existing = tenant_or_404(db, tenant).await?;
    let deleted = E::delete_by_id(existing.id).exec(db).await?;
    if deleted.rows_affected == 0 {
        return Err(no_webhook(tenant));
    }
    Ok(DeletedResponse::Deleted)
}
