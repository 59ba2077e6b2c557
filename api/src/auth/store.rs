//! API keys in PostgreSQL: create, list, revoke, and find the live key
//! behind a presented secret. Shared by the `/api/keys` routes and the
//! `flagmeter-api keys` command.

use chrono::{DateTime, Utc};
use domain::validate::Invalid;
use entity::api_keys::{self, Column, Entity};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    Scope,
    secret::{self, KeyHash},
};

/// A key as just created: its record and its secret, which exists nowhere
/// else.
pub struct NewKey {
    pub key: api_keys::Model,
    pub secret: String,
}

/// What a new key is to be.
pub struct KeySpec<'a> {
    pub name: &'a str,
    pub scopes: &'a [Scope],
    /// The one tenant it may touch, if restricted.
    pub tenant: Option<&'a str>,
    /// When it stops working, if it expires.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Checks what a new key is to be: a name of 1–100 characters without
/// control characters, at least one scope, a valid tenant only for a key
/// without `admin`, and an expiry (if any) still to come at `now`. Returns
/// the name, trimmed.
pub fn check<'a>(spec: &KeySpec<'a>, now: DateTime<Utc>) -> Result<&'a str, Invalid> {
    let KeySpec {
        name,
        scopes,
        tenant,
        expires_at,
    } = *spec;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Invalid::new(
            "name",
            "must be 1–100 characters, not blank, without control characters",
        ));
    }
    if scopes.is_empty() {
        return Err(Invalid::new("scopes", "must name at least one scope"));
    }
    if let Some(tenant) = tenant {
        domain::validate::tenant(tenant)?;
        if scopes.contains(&Scope::Admin) {
            return Err(Invalid::new(
                "scopes",
                "a key restricted to a tenant cannot be admin",
            ));
        }
    }
    if expires_at.is_some_and(|at| at <= now) {
        return Err(Invalid::new("expiresAt", "must be in the future"));
    }
    Ok(name)
}

/// Stores a new key (already [`check`]ed; `spec.name` as it returned it)
/// and returns its secret.
pub async fn create(db: &impl ConnectionTrait, spec: &KeySpec<'_>) -> Result<NewKey, DbErr> {
    let secret = secret::generate();
    let mut names: Vec<String> = spec.scopes.iter().map(|s| s.as_str().to_owned()).collect();
    names.sort();
    names.dedup();
    let key = api_keys::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(spec.name.to_owned()),
        key_hash: Set(secret::hash(&secret).to_vec()),
        prefix: Set(secret::prefix(&secret)),
        scopes: Set(names),
        tenant: Set(spec.tenant.map(str::to_owned)),
        created_at: Set(Utc::now()),
        last_used_at: Set(None),
        revoked_at: Set(None),
        expires_at: Set(spec.expires_at),
    }
    .insert(db)
    .await?;
    Ok(NewKey { key, secret })
}

/// Every key, revoked ones included, oldest first.
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<api_keys::Model>, DbErr> {
    Entity::find().order_by_asc(Column::Id).all(db).await
}

/// Revokes a key (a key already revoked keeps its first revocation time).
/// `None` if there is no such key.
pub async fn revoke(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<api_keys::Model>, DbErr> {
    Entity::update_many()
        .col_expr(Column::RevokedAt, Expr::cust("COALESCE(revoked_at, now())"))
        .filter(Column::Id.eq(id))
        .exec_with_returning(db)
        .await
        .map(|mut keys| keys.pop())
}

/// The unrevoked key whose secret hashes to `hash`, noting that it was used
/// just now. An expired key is found too (the caller answers it "expired"
/// rather than "unknown"), but not noted as used: it was refused.
pub async fn use_key(
    db: &impl ConnectionTrait,
    hash: &KeyHash,
) -> Result<Option<api_keys::Model>, DbErr> {
    let keys = Entity::update_many()
        .col_expr(
            Column::LastUsedAt,
            Expr::cust(
                "CASE WHEN expires_at <= now() THEN last_used_at ELSE CURRENT_TIMESTAMP END",
            ),
        )
        .filter(Column::KeyHash.eq(hash.to_vec()))
        .filter(Column::RevokedAt.is_null())
        .exec_with_returning(db)
        .await?;
    Ok(keys
        .into_iter()
        .find(|key| secret::same(hash, &key.key_hash)))
}
