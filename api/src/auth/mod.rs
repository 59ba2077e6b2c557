//! Who is calling, and what they may do.
//!
//! Every protected route takes an [`ApiKey`]: the `Authorization: Bearer`
//! secret, checked before the handler runs. A missing, unknown or revoked
//! key is a 401, and so is an expired one (error "expired", exactly at its
//! `expires_at` on every replica: the expiry is checked on each request,
//! not cached); a key over its rate limit is a 429. The handler then asks
//! the [`Caller`] for the scope (and tenant) it needs, and a key without
//! them gets a 403.
//!
//! Keys live hashed in PostgreSQL ([`store`]); a replica remembers what it
//! found for a secret for `FLAGMETER_KEY_CACHE_MS` (default 2 s), so a
//! revoked key stops working on every replica within that time, and a
//! busy key costs one query per replica every 2 s, which also records when
//! it was last used. While PostgreSQL is down, keys a replica has seen keep
//! working as last read (a revocation needs PostgreSQL anyway), so ingest,
//! which only needs Valkey, is not stopped by authentication. An open event stream re-checks its key as often, and
//! ends when the key is revoked. `FLAGMETER_ADMIN_KEY`, if set, is an admin key that is
//! not in the database (to create the first keys).

mod caller;
pub mod cli;
mod rate_limit;
pub mod secret;
pub mod store;

use std::time::Duration;

use poem::{
    Endpoint, IntoResponse, Request, Response,
    http::{Method, header},
};
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
    if let Some(caller) = req.extensions().get::<Caller>() {
        return Ok(caller.clone());
    }
    let auth = req
        .data::<Auth>()
        .expect("routes::app installs the authenticator");
    auth.authenticate(&bearer.token)
        .await
        .map_err(|err| poem::Error::from_response(err.into_response()))
}

/// Longest a key lookup may wait for PostgreSQL before the key's last known
/// answer is used (or, for a key never seen, a 503).
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);

/// Authenticates a request that carries a body (POST, PUT, PATCH) before
/// its body is read: without a valid key nobody can make the api buffer or
/// wait for a body. The caller is handed on to the route's [`ApiKey`]; other
/// requests are authenticated by their route alone.
pub async fn before_body<E: Endpoint>(
    next: E,
    mut req: Request,
    auth: Auth,
) -> poem::Result<Response> {
    if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        let caller = match bearer_token(&req) {
            Some(token) => auth.authenticate(token).await,
            None => Err(ApiError::unauthorized()),
        };
        match caller {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
            }
            Err(err) => return Ok(err.into_response()),
        }
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in
/// any case), as poem-openapi reads it.
fn bearer_token(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Checks presented keys: the bootstrap admin key, the key cache, the
/// database, then the key's rate limit.
#[derive(Clone)]
pub struct Auth {
    db: DatabaseConnection,
    admin: Option<KeyHash>,
    /// What each presented secret's hash turned out to be: a live key, or
    /// nothing (unknown secrets are remembered too, so that guessing costs
    /// the database little). While PostgreSQL is unreachable, a key keeps
    /// the answer last read, so ingest (which needs only Valkey) goes on.
    keys: TtlCache<KeyHash, Option<Caller>>,
    limits: Option<RateLimits>,
}

impl Auth {
    pub fn new(db: DatabaseConnection, args: &AuthArgs) -> Self {
        let key_ttl = Duration::from_millis(args.key_cache_ms);
        Self {
            db,
            admin: args.admin_key.as_deref().map(secret::hash),
            keys: TtlCache::new(key_ttl, |_| true).stale_if_error(Option::is_some),
            limits: RateLimits::new(args.rate_limit_per_sec, args.rate_limit_burst),
        }
    }

    /// The caller a secret belongs to, within its rate limit (the request
    /// costs one).
    pub async fn authenticate(&self, presented: &str) -> Result<Caller, ApiError> {
        let hash = secret::hash(presented);
        let caller = if self.admin.is_some_and(|admin| secret::same(&admin, &hash)) {
            Some(Caller::bootstrap_admin(hash))
        } else if secret::well_formed(presented) {
            self.stored(&hash).await?
        } else {
            // Not shaped like a key, so not in the database: refused without
            // a query, and without a cache entry.
            None
        };
        let caller = caller.ok_or_else(ApiError::unauthorized)?;
        caller.unexpired(chrono::Utc::now())?;
        if let Some(limits) = &self.limits {
            limits.check(caller.key_id)?;
        }
        Ok(caller)
    }

    /// Charges the rest of a batch of `events` to the caller's rate limit
    /// (one per event, at most the burst; authentication paid one): a 429
    /// if it is over.
    pub fn charge_batch(&self, caller: &Caller, events: usize) -> Result<(), ApiError> {
        match &self.limits {
            Some(limits) => {
                limits.check_batch(caller.key_id, events.try_into().unwrap_or(u32::MAX))
            }
            None => Ok(()),
        }
    }

    /// Resolves once the caller's key no longer works (it was revoked, or
    /// it expired), checked as often as the key cache lets a revocation
    /// through: an open stream ends within about twice
    /// `FLAGMETER_KEY_CACHE_MS`. The environment's admin key cannot be
    /// revoked: never.
    pub async fn revoked(self, caller: Caller) {
        if caller.is_bootstrap_admin() {
            return std::future::pending().await;
        }
        let every = self.keys.ttl().max(Duration::from_millis(250));
        loop {
            tokio::time::sleep(every).await;
            if caller.unexpired(chrono::Utc::now()).is_err() {
                return;
            }
            // A database error is not a revocation: the stream goes on.
            if let Ok(None) = self.stored(&caller.key_hash).await {
                return;
            }
        }
    }

    /// The live database key behind a secret's hash, through the cache.
    async fn stored(&self, hash: &KeyHash) -> Result<Option<Caller>, ApiError> {
        self.keys
            .get(hash, || async {
                let key = tokio::time::timeout(LOOKUP_TIMEOUT, store::use_key(&self.db, hash))
                    .await
                    .map_err(|_| ApiError::unavailable("database unavailable"))??;
                Ok::<_, ApiError>(key.map(Caller::from))
            })
            .await
    }

    /// Makes this replica forget a key at once (after its revocation); other
    /// replicas forget it when their cache entry expires.
    pub fn forget(&self, key_hash: &[u8]) {
        if let Ok(hash) = KeyHash::try_from(key_hash) {
            self.keys.forget(&hash);
        }
    }
}
