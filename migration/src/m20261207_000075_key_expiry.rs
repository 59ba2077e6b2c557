//! Keys that expire (issue 31): an optional `expires_at`, after which the
//! api answers the key with a 401 "expired". A key without one works until
//! it is revoked, as every key did before.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

sql_migration!(
    "ALTER TABLE api_keys ADD COLUMN expires_at timestamptz",
    "ALTER TABLE api_keys DROP COLUMN expires_at"
);
