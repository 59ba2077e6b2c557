//! Who is calling, and what they may do.
//!
//! Every protected route takes an [`ApiKey`]: the `Authorization: Bearer`
//! secret, checked before the handler runs. A missing, unknown or revoked
//! key is a 401; a key over its rate limit is a 429. The handler then asks
//! the [`Caller`] for the scope (and tenant) it needs, and a key without
//! them gets a 403.
//!
//! Keys live hashed in PostgreSQL ([`store`]); a replica remembers what it
//! found for a secret for `FLAGMETER_KEY_CACHE_MS` (default 2 s), so a
//! revoked key stops working on every replica within that time, and a
//! busy key costs one query per replica every 2 s, which also records when
//! it was last used. `FLAGMETER_ADMIN_KEY`, if set, is an admin key that is
//! not in the database (to create the first keys).

mod caller;
mod rate_limit;
pub mod secret;
pub mod store;

use std::time::Duration;

use poem::{IntoResponse, Request};
use poem_openapi::{SecurityScheme, auth::Bearer};
use sea_orm::DatabaseConnection;

pub use caller::{Caller, Scope};
use rate_limit::RateLimits;
use secret::KeyHash;

use crate::{config::AuthArgs, error::ApiError, ttl_cache::TtlCache};

/// An API key (`fmk_` and 64 hex digits) created with `POST /api/keys` or
/// `flagmeter-api keys create`, or the deployment's `FLAGMETER_ADMIN_KEY`,
/// sent as `Authorization: Bearer <key>`.
#[derive(SecurityScheme)]
#[oai(
    ty = "bearer",
    bearer_format = "fmk_<64 hex digits>",
    checker = "authenticate"
)]
pub struct ApiKey(pub Caller);

async fn authenticate(req: &Request, bearer: Bearer) -> poem::Result<Caller> {
    let auth = req
        .data::<Auth>()
        .expect("routes::app installs the authenticator");
    auth.authenticate(&bearer.token)
        .await
        .map_err(|err| poem::Error::from_response(err.into_response()))
}

/// Checks presented keys: the bootstrap admin key, the key cache, the
/// database, then the key's rate limit.
#[derive(Clone)]
pub struct Auth {
    db: DatabaseConnection,
    admin: Option<KeyHash>,
    /// What each presented secret's hash turned out to be: a live key, or
    /// nothing (unknown secrets are remembered too, so that guessing costs
    /// the database little).
    keys: TtlCache<KeyHash, Option<Caller>>,
    limits: Option<RateLimits>,
}

impl Auth {
    pub fn new(db: DatabaseConnection, args: &AuthArgs) -> Self {
        Self {
            db,
            admin: args.admin_key.as_deref().map(secret::hash),
            keys: TtlCache::new(Duration::from_millis(args.key_cache_ms), |_| true),
            limits: RateLimits::new(args.rate_limit_per_sec, args.rate_limit_burst),
        }
    }

    /// The caller a secret belongs to, within its rate limit.
    pub async fn authenticate(&self, presented: &str) -> Result<Caller, ApiError> {
        let hash = secret::hash(presented);
        let caller = match self.admin {
            Some(admin) if secret::same(&admin, &hash) => Caller::bootstrap_admin(),
            _ => self
                .keys
                .get(&hash, || async {
                    let key = store::use_key(&self.db, &hash).await?;
                    Ok::<_, ApiError>(key.map(Caller::from))
                })
                .await?
                .ok_or_else(ApiError::unauthorized)?,
        };
        if let Some(limits) = &self.limits {
            limits.check(caller.key_id)?;
        }
        Ok(caller)
    }

    /// Makes this replica forget a key at once (after its revocation); other
    /// replicas forget it when their cache entry expires.
    pub fn forget(&self, key_hash: &[u8]) {
        if let Ok(hash) = KeyHash::try_from(key_hash) {
            self.keys.forget(&hash);
        }
    }
}
