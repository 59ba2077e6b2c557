//! A caller: the key that authenticated a request, what it may do, and for
//! which tenant.

use chrono::{DateTime, Utc};
use entity::api_keys;
use poem_openapi::Enum;
use uuid::Uuid;

use super::secret::KeyHash;
use crate::error::{ApiError, ErrorDetails};

/// What a key may do. `admin` includes the other two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum)]
#[oai(rename_all = "lowercase")]
pub enum Scope {
    /// Manage tenants, webhooks and keys; ingest and read anything.
    Admin,
    /// Send usage events.
    Ingest,
    /// Read usage.
    Read,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Ingest => "ingest",
            Scope::Read => "read",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Scope::Admin, Scope::Ingest, Scope::Read]
            .into_iter()
            .find(|scope| scope.as_str() == name)
    }

    /// The scopes among stored names (the database allows no others).
    pub fn parse_all(names: &[String]) -> Vec<Self> {
        names.iter().filter_map(|name| Self::parse(name)).collect()
    }
}

/// The authenticated key behind a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's id (nil for `FLAGMETER_ADMIN_KEY`); its rate limit's key.
    pub key_id: Uuid,
    /// The hash of the key's secret, to check later that it still works.
    pub key_hash: KeyHash,
    scopes: Vec<Scope>,
    /// The only tenant this key may touch, if restricted.
    tenant: Option<String>,
    /// When the key stops working, if it expires: checked on every request,
    /// so a cached key expires on time.
    expires_at: Option<DateTime<Utc>>,
}

impl From<api_keys::Model> for Caller {
    fn from(key: api_keys::Model) -> Self {
        Self {
            key_id: key.id,
            key_hash: KeyHash::try_from(key.key_hash.as_slice()).unwrap_or_default(),
            scopes: Scope::parse_all(&key.scopes),
            tenant: key.tenant,
            expires_at: key.expires_at,
        }
    }
}

impl Caller {
    /// `FLAGMETER_ADMIN_KEY`: every scope, every tenant.
    pub fn bootstrap_admin(key_hash: KeyHash) -> Self {
        Self {
            key_id: Uuid::nil(),
            key_hash,
            scopes: vec![Scope::Admin],
            tenant: None,
            expires_at: None,
        }
    }

    /// The only tenant this key may touch, if it is restricted to one.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// Refuses (401 "expired") a key whose expiry has come at `now`.
    pub fn unexpired(&self, now: DateTime<Utc>) -> Result<(), ApiError> {
        match self.expires_at {
            Some(at) if at <= now => Err(ApiError::expired_key(at)),
            _ => Ok(()),
        }
    }

    /// Whether this is `FLAGMETER_ADMIN_KEY`, which lives outside the
    /// database.
    pub fn is_bootstrap_admin(&self) -> bool {
        self.key_id.is_nil()
    }

    /// Refuses (403) a key without `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "the key lacks a scope",
                ErrorDetails::reason(format!("needs the {} scope", scope.as_str())),
            ))
        }
    }

    /// Refuses (403) a key without `scope`, or restricted to another tenant.
    pub fn require_for(&self, scope: Scope, tenant: &str) -> Result<(), ApiError> {
        self.require(scope)?;
        match &self.tenant {
            Some(own) if own != tenant => Err(ApiError::forbidden(
                "the key is restricted to another tenant",
                ErrorDetails::field("tenant", format!("{tenant} is not this key's tenant")),
            )),
            _ => Ok(()),
        }
    }

    /// Refuses (403) a key without `scope`, or restricted to one tenant:
    /// for routes that span every tenant.
    pub fn require_all_tenants(&self, scope: Scope) -> Result<(), ApiError> {
        self.require(scope)?;
        match &self.tenant {
            Some(_) => Err(ApiError::forbidden(
                "the key is restricted to one tenant; this route spans all tenants",
                ErrorDetails::reason(format!(
                    "needs a {} key that is not restricted to a tenant",
                    scope.as_str()
                )),
            )),
            None => Ok(()),
        }
    }
}
