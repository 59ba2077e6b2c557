//! `/api/tenants/...`, one route group a concept: a tenant's configuration
//! ([`config`]), its Slack webhook ([`slack_webhook`]) and its alert history
//! ([`alert_history`]). They share the lookup of the tenant they name.

mod alert_history;
mod config;
mod slack_webhook;

pub use alert_history::AlertHistoryApi;
pub use config::TenantConfigApi;
pub use slack_webhook::SlackWebhookApi;

use entity::tenants;
use poem_openapi::ApiResponse;
use sea_orm::{DatabaseConnection, EntityTrait};

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
