//! `api_keys`: who may call the api, for what, and for which tenant.

use sea_orm::entity::prelude::*;

table!("api_keys" {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    /// SHA-256 of the secret. The secret itself is never stored.
    pub key_hash: Vec<u8>,
    /// The secret's first characters, to recognise a key in a list.
    pub prefix: String,
    /// Any of `admin`, `ingest`, `read`.
    pub scopes: Vec<String>,
    /// The one tenant this key may ingest for or read, if restricted.
    pub tenant: Option<String>,
    pub created_at: DateTimeUtc,
    pub last_used_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
    /// When the key stops working, if it expires.
    pub expires_at: Option<DateTimeUtc>,
});
