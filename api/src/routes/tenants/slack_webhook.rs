//! `/api/tenants/{tenant}/slack-webhook`: the Slack incoming webhook a
//! tenant's alerts are posted to, shown masked, and a test message. URLs
//! must pass the allow-list ([`alerts::webhook::WebhookPolicy`]) both when
//! saved and when used.

use alerts::{slack, webhook};
use chrono::{DateTime, Utc};
use entity::slack_webhooks;
use poem_openapi::{Object, OpenApi, param::Path, payload::Json, types::Example};

use super::{DeletedResponse, admin_tenant, allowed_url, delete_webhook_row, upsert, webhook_row};
use crate::{
    auth::ApiKey,
    error::{ApiError, BodyError},
    routes::{ApiTags, Found, Saved, invalid, rules::TenantSlug},
    state::AppState,
};

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

/// What Slack answered to the test message.
#[derive(Debug, Object)]
pub struct WebhookTest {
    pub delivered: bool,
    /// Slack's answer, or why nothing was delivered.
    pub detail: String,
}

const SAVE: &str = r#"
INSERT INTO slack_webhooks AS w (tenant, url, enabled) VALUES ($1, $2, $3)
ON CONFLICT (tenant) DO UPDATE
SET url = excluded.url, enabled = excluded.enabled, updated_at = now()
RETURNING w.tenant, w.url, w.enabled, w.created_at, w.updated_at, (xmax = 0) AS created
"#;

/// The routes below, over the shared state.
pub struct SlackWebhookApi(pub AppState);

#[OpenApi(tag = "ApiTags::Tenants")]
impl SlackWebhookApi {
    /// Set the Slack incoming webhook alerts are posted to: 201 when the
    /// tenant had none, 200 when it replaces one.
    #[oai(
        path = "/api/tenants/:tenant/slack-webhook",
        method = "put",
        operation_id = "putSlackWebhook"
    )]
    async fn put_webhook(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
        body: Json<WebhookIn>,
    ) -> Result<Saved<Webhook>, BodyError> {
        let existing = admin_tenant(&self.0.db, &auth, &tenant).await?;
        let values = [
            existing.id.into(),
            allowed_url(&self.0, &body.url)?.into(),
            body.enabled.unwrap_or(true).into(),
        ];
        let (saved, created) = upsert::<slack_webhooks::Model, 3>(&self.0.db, SAVE, values).await?;
        Ok(Saved::new(created, Webhook::from(saved)))
    }

    /// The tenant's webhook, its secret part masked.
    #[oai(
        path = "/api/tenants/:tenant/slack-webhook",
        method = "get",
        operation_id = "getSlackWebhook"
    )]
    async fn get_webhook(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
    ) -> Result<Found<Webhook>, ApiError> {
        let (_, hook) = webhook_row::<slack_webhooks::Entity>(&self.0.db, &auth, &tenant).await?;
        Ok(Found::Ok(Json(hook.into())))
    }

    /// Remove the tenant's webhook: alerts are then recorded as `no_webhook`.
    #[oai(
        path = "/api/tenants/:tenant/slack-webhook",
        method = "delete",
        operation_id = "deleteSlackWebhook"
    )]
    async fn delete_webhook(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
    ) -> Result<DeletedResponse, ApiError> {
        delete_webhook_row::<slack_webhooks::Entity>(&self.0.db, &auth, &tenant).await
    }

    /// Send a test message to the tenant's webhook and report Slack's answer.
    #[oai(
        path = "/api/tenants/:tenant/slack-webhook/test",
        method = "post",
        operation_id = "testSlackWebhook"
    )]
    async fn test_webhook(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
    ) -> Result<Found<WebhookTest>, ApiError> {
        let (existing, hook) =
            webhook_row::<slack_webhooks::Entity>(&self.0.db, &auth, &tenant).await?;
        // Checked again: the allow-list may have changed since it was saved.
        let url = self
            .0
            .webhook_policy
            .check(&hook.url)
            .map_err(|refused| invalid("url", refused))?;
        let answer = self
            .0
            .slack
            .post(url, &slack::test_payload(&existing.name))
            .await;
        let (delivered, detail) = match answer {
            slack::Answer::Delivered => (true, "Slack accepted the message".to_owned()),
            slack::Answer::RateLimited(_) => (false, "429 rate limited by Slack".to_owned()),
            slack::Answer::Transient(detail) | slack::Answer::Permanent(detail) => (false, detail),
        };
        Ok(Found::Ok(Json(WebhookTest { delivered, detail })))
    }
}
