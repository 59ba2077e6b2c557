//! API keys in PostgreSQL: create, list, revoke, and find the live key
//! behind a presented secret. Shared by the `/api/keys` routes and the
//! `flagmeter-api keys` command.

use chrono::Utc;
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

/// Checks what a new key is to be: a name of 1–100 characters without
/// control characters, at least one scope, and a valid tenant only for a
/// key without `admin`. Returns the name, trimmed.
pub fn check<'a>(
    name: &'a str,
    scopes: &[Scope],
    tenant: Option<&str>,
) -> Result<&'a str, Invalid> {
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
    Ok(name)
}

/// Stores a new key (already [`check`]ed) and returns its secret.
pub async fn create(
    db: &impl ConnectionTrait,
    name: &str,
    scopes: &[Scope],
    tenant: Option<&str>,
) -> Result<NewKey, DbErr> {
    let secret = secret::generate();
    let mut names: Vec<String> = scopes.iter().map(|s| s.as_str().to_owned()).collect();
    names.sort();
    names.dedup();
    let key = api_keys::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name.to_owned()),
        key_hash: Set(secret::hash(&secret).to_vec()),
        prefix: Set(secret::prefix(&secret)),
        scopes: Set(names),
        tenant: Set(tenant.map(str::to_owned)),
        created_at: Set(Utc::now()),
        last_used_at: Set(None),
        revoked_at: Set(None),
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

/// The live (unrevoked) key whose secret hashes to `hash`, noting that it
/// was used just now.
pub async fn use_key(
    db: &impl ConnectionTrait,
    hash: &KeyHash,
) -> Result<Option<api_keys::Model>, DbErr> {
    let keys = Entity::update_many()
        .col_expr(Column::LastUsedAt, Expr::current_timestamp())
        .filter(Column::KeyHash.eq(hash.to_vec()))
        .filter(Column::RevokedAt.is_null())
        .exec_with_returning(db)
        .await?;
    Ok(keys
        .into_iter()
        .find(|key| secret::same(hash, &key.key_hash)))
}
