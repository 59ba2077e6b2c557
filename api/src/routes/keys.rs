//! `/api/keys`: create, list and revoke API keys (admin scope).
//!
//! A key's secret is in the answer to its creation and nowhere else: the
//! database keeps only its hash, listings show its first characters.

use chrono::{DateTime, Utc};
use entity::api_keys;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json, types::Example};
use serde_json::json;
use uuid::Uuid;

use super::{
    ApiTags, Created, Found, invalid,
    rules::{KeyName, TenantField},
};
use crate::{
    auth::{ApiKey, Scope, store},
    error::{ApiError, BodyError},
    state::AppState,
};

/// A key to create.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct KeyIn {
    /// What the key is for, e.g. `acme ingest, production`: 1–100
    /// characters, not all white space, without control characters.
    #[oai(validator(min_length = 1, max_length = 100))]
    pub name: KeyName,
    /// What the key may do: `admin` (everything), `ingest`, `read`.
    #[oai(validator(min_items = 1, max_items = 3, unique_items = true))]
    pub scopes: Vec<Scope>,
    /// Restrict the key to this tenant: it may then only ingest events for
    /// it and read its usage (a customer-facing key). Not with `admin`.
    #[oai(nullable, validator(min_length = 1, max_length = 64))]
    pub tenant: Option<TenantField>,
    /// When the key stops working (RFC 3339, in the future); after it, the
    /// key gets a 401 "expired". Absent: the key works until revoked.
    #[oai(nullable, deserialize_with = "expires_at")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// `expiresAt`, named in its type errors.
fn expires_at(
    value: Option<serde_json::Value>,
) -> poem_openapi::types::ParseResult<Option<DateTime<Utc>>> {
    super::rules::named_string("expiresAt", value)
}

impl Example for KeyIn {
    fn example() -> Self {
        Self {
            name: KeyName("acme production".to_owned()),
            scopes: vec![Scope::Ingest, Scope::Read],
            tenant: Some(TenantField("acme-corp".to_owned())),
            expires_at: None,
        }
    }
}

/// A key, without its secret.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct KeyInfo {
    pub id: Uuid,
    pub name: String,
    /// The secret's first characters, to recognise the key.
    pub prefix: String,
    pub scopes: Vec<Scope>,
    #[oai(skip_serializing_if_is_none)]
    pub tenant: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the key was last used, to within `FLAGMETER_KEY_CACHE_MS`.
    #[oai(skip_serializing_if_is_none)]
    pub last_used_at: Option<DateTime<Utc>>,
    /// Set once the key is revoked; it no longer works.
    #[oai(skip_serializing_if_is_none)]
    pub revoked_at: Option<DateTime<Utc>>,
    /// When the key stops working, if it expires.
    #[oai(skip_serializing_if_is_none)]
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<api_keys::Model> for KeyInfo {
    fn from(key: api_keys::Model) -> Self {
        Self {
            id: key.id,
            name: key.name,
            prefix: key.prefix,
            scopes: Scope::parse_all(&key.scopes),
            tenant: key.tenant,
            created_at: key.created_at,
            last_used_at: key.last_used_at,
            revoked_at: key.revoked_at,
            expires_at: key.expires_at,
        }
    }
}

/// A new key and its secret.
#[derive(Debug, Object)]
pub struct CreatedKey {
    /// The secret, to send as `Authorization: Bearer <key>`. Shown this once:
    /// it cannot be read back.
    pub key: String,
    #[oai(flatten)]
    pub info: KeyInfo,
}

/// Every key, oldest first.
#[derive(Debug, Object)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}

#[derive(ApiResponse)]
enum RevokeKeyResponse {
    /// Revoked: the key stops working within `FLAGMETER_KEY_CACHE_MS` on
    /// every replica.
    #[oai(status = 204)]
    Revoked,
}

/// The routes below, over the shared state.
pub struct KeysApi(pub AppState);

#[OpenApi(tag = "ApiTags::Keys")]
impl KeysApi {
    /// Create an API key. Its secret is in this answer only.
    #[oai(path = "/api/keys", method = "post", operation_id = "createKey")]
    async fn create(
        &self,
        auth: ApiKey,
        body: Json<KeyIn>,
    ) -> Result<Created<CreatedKey>, BodyError> {
        auth.0.require(Scope::Admin)?;
        let mut spec = store::KeySpec {
            name: &body.name,
            scopes: &body.scopes,
            tenant: body.tenant.as_deref(),
            expires_at: body.expires_at,
        };
        spec.name = store::check(&spec, Utc::now()).map_err(|e| invalid(e.field, e.reason))?;
        let created = store::create(&self.0.db, &spec).await?;
        Ok(Created::Created(Json(CreatedKey {
            key: created.secret,
            info: created.key.into(),
        })))
    }

    /// Every API key, without secrets.
    #[oai(path = "/api/keys", method = "get", operation_id = "listKeys")]
    async fn list(&self, auth: ApiKey) -> Result<Found<KeyList>, ApiError> {
        auth.0.require(Scope::Admin)?;
        let keys = store::list(&self.0.db).await?;
        Ok(Found::Ok(Json(KeyList {
            keys: keys.into_iter().map(KeyInfo::from).collect(),
        })))
    }

    /// Revoke an API key. Revoking a revoked key changes nothing.
    #[oai(path = "/api/keys/:id", method = "delete", operation_id = "revokeKey")]
    async fn revoke(&self, auth: ApiKey, id: Path<Uuid>) -> Result<RevokeKeyResponse, ApiError> {
        auth.0.require(Scope::Admin)?;
        let key = store::revoke(&self.0.db, id.0).await?.ok_or_else(|| {
            ApiError::NotFound(crate::error::ErrorBody::new(
                "unknown key",
                Some(json!({ "id": id.0 })),
            ))
        })?;
        self.0.auth.forget(&key.key_hash);
        Ok(RevokeKeyResponse::Revoked)
    }
}
