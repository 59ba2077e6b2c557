//! `/api/tenants/...`, one route group a concept: a tenant's configuration
//! ([`config`]), its Slack webhook ([`slack_webhook`]), its signed webhook
//! ([`webhook`]) and its alert history ([`alert_history`]). They share the
//! lookup of the tenant they name, and the two webhooks the lookup,
//! allow-list check, upsert (whose answer tells creation from replacement)
//! and deletion of their row.

mod alert_history;
mod config;
mod slack_webhook;
mod webhook;

pub use alert_history::{AlertHistoryApi, AlertKind};
pub use config::TenantConfigApi;
pub use slack_webhook::SlackWebhookApi;
pub use webhook::SignedWebhookApi;

use entity::tenants;
use poem_openapi::ApiResponse;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, FromQueryResult,
    PrimaryKeyTrait, Statement, Value,
};
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

/// Runs an upsert of one row whose `RETURNING` list ends with
/// `(xmax = 0) AS created`: the row as saved, and whether the statement
/// inserted it (PostgreSQL leaves `xmax` 0 on a row version it inserted,
/// and sets it on one `ON CONFLICT DO UPDATE` rewrote), for the 201 or 200
/// of a `PUT`.
async fn upsert<M: FromQueryResult, const N: usize>(
    db: &DatabaseConnection,
    sql: &str,
    values: [Value; N],
) -> Result<(M, bool), DbErr> {
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
    let row = db
        .query_one_raw(statement)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the upsert returned no row".into()))?;
    let created: bool = row.try_get("", "created")?;
    Ok((M::from_query_result(&row, "")?, created))
}
