//! `/api/tenants/{tenant}/webhook`: a tenant's own endpoint for quota
//! alerts, signed per Standard Webhooks ([`alerts::signing`]), beside or
//! instead of Slack. Creating it issues a `whsec_` secret, shown in that
//! answer and in a rotation's only; everywhere else it is masked. The URL
//! passes the same allow-list as Slack's, when saved and when used.

use alerts::{signing::WebhookSecret, webhook};
use chrono::{DateTime, Utc};
use entity::tenant_webhooks;
use poem_openapi::{Object, OpenApi, param::Path, payload::Json, types::Example};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, FromQueryResult, QueryResult, Statement, Value};

use super::{
    DeletedResponse, admin_tenant, allowed_url, delete_webhook_row, no_webhook, upsert, webhook_row,
};
use crate::{
    auth::ApiKey,
    error::{ApiError, BodyError},
    routes::{ApiTags, Found, Saved, rules::TenantSlug},
    state::AppState,
};

/// A tenant's signed webhook, as saved.
#[derive(Debug, Object)]
#[oai(example)]
pub struct SignedWebhookIn {
    /// An `https` URL on a host of `FLAGMETER_WEBHOOK_ALLOWED_HOSTS`.
    #[oai(validator(max_length = 2048))]
    pub url: String,
    /// Whether alerts are delivered (default true).
    #[oai(nullable)]
    pub enabled: Option<bool>,
}

impl Example for SignedWebhookIn {
    fn example() -> Self {
        Self {
            url: "https://billing.example.com/hooks/flagmeter".to_owned(),
            enabled: Some(true),
        }
    }
}

/// A tenant's signed webhook.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct SignedWebhook {
    /// The URL, its secret part masked.
    pub url: String,
    pub enabled: bool,
    /// The signing secret, `whsec_<base64>`: whole in the answer that
    /// issued it (creation, rotation), masked (`whsec_AbCd****`) elsewhere.
    pub secret: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SignedWebhook {
    /// With the secret masked, or whole when `issued` just now.
    fn from_row(row: tenant_webhooks::Model, issued: bool) -> Result<Self, ApiError> {
        let secret = WebhookSecret::parse(&row.secret).map_err(|err| ApiError::internal(&err))?;
        Ok(Self {
            url: webhook::mask(&row.url),
            enabled: row.enabled,
            secret: if issued {
                secret.expose().to_owned()
            } else {
                secret.masked()
            },
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

const SAVE: &str = r#"
INSERT INTO tenant_webhooks AS w (tenant, url, secret, enabled) VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant) DO UPDATE
SET url = excluded.url, enabled = excluded.enabled, updated_at = now()
RETURNING w.tenant, w.url, w.secret, w.enabled, w.created_at, w.updated_at, (xmax = 0) AS created
"#;

const ROTATE: &str = r#"
UPDATE tenant_webhooks SET secret = $2, updated_at = now() WHERE tenant = $1
RETURNING tenant, url, secret, enabled, created_at, updated_at
"#;

/// The routes below, over the shared state.
pub struct SignedWebhookApi(pub AppState);

impl SignedWebhookApi {
    /// The row a statement with `RETURNING` gave, if any.
    async fn returning<const N: usize>(
        &self,
        sql: &str,
        values: [Value; N],
    ) -> Result<Option<QueryResult>, DbErr> {
        let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
        self.0.db.query_one_raw(statement).await
    }
}

#[OpenApi(tag = "ApiTags::Tenants")]
impl SignedWebhookApi {
    /// Set the tenant's signed webhook; creating it issues its secret.
    #[oai(path = "/api/tenants/:tenant/webhook", method = "put")]
    async fn put_webhook(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
        body: Json<SignedWebhookIn>,
    ) -> Result<Saved<SignedWebhook>, BodyError> {
        let existing = admin_tenant(&self.0.db, &auth, &tenant).await?;
        let values = [
            existing.id.into(),
            allowed_url(&self.0, &body.url)?.into(),
            WebhookSecret::generate().expose().into(),
            body.enabled.unwrap_or(true).into(),
        ];
        let (saved, created) =
            upsert::<tenant_webhooks::Model, 4>(&self.0.db, SAVE, values).await?;
        Ok(Saved::new(
            created,
            SignedWebhook::from_row(saved, created)?,
        ))
    }

    /// The tenant's signed webhook, URL and secret masked.
    #[oai(path = "/api/tenants/:tenant/webhook", method = "get")]
    async fn get_webhook(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
    ) -> Result<Found<SignedWebhook>, ApiError> {
        let (_, row) = webhook_row::<tenant_webhooks::Entity>(&self.0.db, &auth, &tenant).await?;
        Ok(Found::Ok(Json(SignedWebhook::from_row(row, false)?)))
    }

    /// Remove the tenant's signed webhook: alerts no longer go there.
    #[oai(path = "/api/tenants/:tenant/webhook", method = "delete")]
    async fn delete_webhook(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
    ) -> Result<DeletedResponse, ApiError> {
        delete_webhook_row::<tenant_webhooks::Entity>(&self.0.db, &auth, &tenant).await
    }

    /// Issue a new signing secret; the old one stops signing at once.
    #[oai(path = "/api/tenants/:tenant/webhook/rotate-secret", method = "post")]
    async fn rotate_secret(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
    ) -> Result<Found<SignedWebhook>, ApiError> {
        let existing = admin_tenant(&self.0.db, &auth, &tenant).await?;
        let values = [
            existing.id.into(),
            WebhookSecret::generate().expose().into(),
        ];
        let row = self
            .returning(ROTATE, values)
            .await?
            .ok_or_else(|| no_webhook(&tenant))?;
        let rotated = tenant_webhooks::Model::from_query_result(&row, "")?;
        Ok(Found::Ok(Json(SignedWebhook::from_row(rotated, true)?)))
    }
}
