//! Per-minute limits of a tenant (issue 28): `tokens_per_minute` and
//! `requests_per_minute`, both optional (`NULL`: no such limit). The api
//! enforces them with reservations over a sliding 60-second window kept in
//! Valkey; PostgreSQL only holds the settings. Adding nullable columns
//! without a default rewrites no row, so an existing database upgrades in
//! place at once.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE tenants
    ADD COLUMN tokens_per_minute bigint CHECK (tokens_per_minute > 0),
    ADD COLUMN requests_per_minute bigint CHECK (requests_per_minute > 0);
"#;

const DOWN: &str = r#"
ALTER TABLE tenants DROP COLUMN tokens_per_minute, DROP COLUMN requests_per_minute;
"#;

sql_migration!(UP, DOWN);
