//! `/api/tenants/{tenant}/webhook`: a tenant's own endpoint for quota
//! alerts, signed per Standard Webhooks ([`alerts::signing`]), beside or
//! instead of Slack. Creating it issues a `whsec_` secret, shown in that
//! answer and in a rotation's only; everywhere else it is masked. The URL
//! passes the same allow-list as Slack's, when saved and when used.
//!
//! A rotation keeps the old secret signing beside the new one for
//! `FLAGMETER_WEBHOOK_ROTATION_GRACE_SECS` (a day by default), so that the
//! receiver can switch without refusing an alert; the answers say until
//! when (`previousSecretsExpireAt`).

use alerts::{signing::WebhookSecret, webhook};
use chrono::{DateTime, Utc};
use entity::tenant_webhooks;
use poem_openapi::{Object, OpenApi, param::Path, payload::Json, types::Example};
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QuerySelect, Statement,
    TransactionTrait, Value,
};

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
    /// Until when deliveries are also signed with secrets rotated out
    /// (each for `FLAGMETER_WEBHOOK_ROTATION_GRACE_SECS` after its
    /// rotation); absent when none is.
    #[oai(skip_serializing_if_is_none)]
    pub previous_secrets_expire_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SignedWebhook {
    /// With the secret masked, or whole when `issued` just now.
    fn from_row(
        row: tenant_webhooks::Model,
        issued: bool,
        previous_secrets_expire_at: Option<DateTime<Utc>>,
    ) -> Result<Self, ApiError> {
        let secret = WebhookSecret::parse(&row.secret).map_err(|err| ApiError::internal(&err))?;
        Ok(Self {
            url: webhook::mask(&row.url),
            enabled: row.enabled,
            secret: if issued {
                secret.expose().to_owned()
            } else {
                secret.masked()
            },
            previous_secrets_expire_at,
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

/// Keeps the secret being replaced (`$2`) signing for `$3` seconds.
const RETIRE: &str = r#"
INSERT INTO tenant_webhook_retired_secrets (tenant, secret, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT DO NOTHING
"#;

/// Forgets the tenant's retired secrets past their grace, and all but the
/// `$2` newest: each one adds a signature to every delivery.
const PRUNE: &str = r#"
DELETE FROM tenant_webhook_retired_secrets
WHERE tenant = $1
  AND (expires_at <= now()
       OR secret NOT IN (SELECT secret FROM tenant_webhook_retired_secrets
                         WHERE tenant = $1 ORDER BY retired_at DESC LIMIT $2))
"#;

/// Retired secrets kept signing at most: a secret rotated several times
/// within a grace period keeps its last few.
const MAX_RETIRED_SECRETS: i64 = 3;

/// Until when the tenant's retired secrets still sign, if any does.
async fn retired_until<C: ConnectionTrait>(
    db: &C,
    tenant: &str,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT max(expires_at) AS until FROM tenant_webhook_retired_secrets
             WHERE tenant = $1 AND expires_at > now()",
            [tenant.into()],
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get("", "until")?,
        None => None,
    })
}

/// The routes below, over the shared state.
pub struct SignedWebhookApi(pub AppState);

#[OpenApi(tag = "ApiTags::Tenants")]
impl SignedWebhookApi {
    /// Set the tenant's signed webhook; creating it issues its secret.
    #[oai(
        path = "/api/tenants/:tenant/webhook",
        method = "put",
        operation_id = "putWebhook"
    )]
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
        let until = retired_until(&self.0.db, &saved.tenant).await?;
        Ok(Saved::new(
            created,
            SignedWebhook::from_row(saved, created, until)?,
        ))
    }

    /// The tenant's signed webhook, URL and secret masked.
    #[oai(
        path = "/api/tenants/:tenant/webhook",
        method = "get",
        operation_id = "getWebhook"
    )]
    async fn get_webhook(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
    ) -> Result<Found<SignedWebhook>, ApiError> {
        let (_, row) = webhook_row::<tenant_webhooks::Entity>(&self.0.db, &auth, &tenant).await?;
        let until = retired_until(&self.0.db, &row.tenant).await?;
        Ok(Found::Ok(Json(SignedWebhook::from_row(row, false, until)?)))
    }

    /// Remove the tenant's signed webhook: alerts no longer go there.
    #[oai(
        path = "/api/tenants/:tenant/webhook",
        method = "delete",
        operation_id = "deleteWebhook"
    )]
    async fn delete_webhook(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
    ) -> Result<DeletedResponse, ApiError> {
        delete_webhook_row::<tenant_webhooks::Entity>(&self.0.db, &auth, &tenant).await
    }

    /// Issue a new signing secret. The old one keeps signing beside it for
    /// the grace period (`FLAGMETER_WEBHOOK_ROTATION_GRACE_SECS`, a day by
    /// default; `previousSecretsExpireAt` says until when), so that the
    /// receiver can switch to the new one without refusing an alert.
    #[oai(
        path = "/api/tenants/:tenant/webhook/rotate-secret",
        method = "post",
        operation_id = "rotateWebhookSecret"
    )]
    async fn rotate_secret(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
    ) -> Result<Found<SignedWebhook>, ApiError> {
        let existing = admin_tenant(&self.0.db, &auth, &tenant).await?;
        let txn = self.0.db.begin().await?;
        // Locked, so that two rotations at once retire one secret each.
        let old = tenant_webhooks::Entity::find_by_id(existing.id.clone())
            .lock_exclusive()
            .one(&txn)
            .await?
            .ok_or_else(|| no_webhook(&tenant))?;
        let statement = |sql: &str, values: Vec<Value>| {
            Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
        };
        let grace = self.0.webhook_rotation_grace;
        if !grace.is_zero() {
            let retire = statement(
                RETIRE,
                vec![
                    old.tenant.clone().into(),
                    old.secret.into(),
                    grace.as_secs_f64().into(),
                ],
            );
            txn.execute_raw(retire).await?;
        }
        let prune = statement(
            PRUNE,
            vec![old.tenant.clone().into(), MAX_RETIRED_SECRETS.into()],
        );
        txn.execute_raw(prune).await?;
        let rotate = statement(
            ROTATE,
            vec![
                old.tenant.clone().into(),
                WebhookSecret::generate().expose().into(),
            ],
        );
        let row = txn
            .query_one_raw(rotate)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("the locked webhook row is gone".into()))?;
        let rotated = tenant_webhooks::Model::from_query_result(&row, "")?;
        let until = retired_until(&txn, &rotated.tenant).await?;
        txn.commit().await?;
        Ok(Found::Ok(Json(SignedWebhook::from_row(
            rotated, true, until,
        )?)))
    }
}
