//! The event explorer's index (issue 17): a tenant's ledger rows in event
//! time order, so that `GET /api/events` reads one page of any tenant's
//! events, however large the ledger, as a range of this index (keyset
//! pagination on `(occurred_at, id)`), never by counting or skipping rows.
//!
//! It costs every counted event one more index entry. Built in the
//! migration's transaction, so it blocks counting while PostgreSQL builds it
//! (a few seconds per million ledger rows): on a large ledger, create it
//! beforehand with `CREATE INDEX CONCURRENTLY` under this name, which makes
//! this migration a no-op.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE INDEX IF NOT EXISTS events_tenant_occurred_idx ON events (tenant, occurred_at, id);
"#;

sql_migration!(UP, "DROP INDEX events_tenant_occurred_idx");
