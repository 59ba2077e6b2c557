//! Byte-wise (`C`) collation on the key columns: tenant ids, event ids and
//! features.
//!
//! Every event costs B-tree comparisons of these strings (the ledger's
//! `(tenant, id)` key, the rollups' `(tenant, feature, ...)` keys) and sorts
//! of them in the batch statement; under a linguistic collation each one
//! goes through `strcoll`, under `C` it is a `memcmp`. The values are ASCII
//! by the domain rules, so equality is unchanged, and ordering is unchanged
//! under `C.UTF-8`; under a linguistic database collation listings ordered by
//! tenant id become byte-ordered (upper case before lower case).
//!
//! An in-place upgrade: a collation change of `text` is binary compatible,
//! so PostgreSQL rewrites no table, only rebuilds the indexes on these
//! columns. That takes an `ACCESS EXCLUSIVE` lock for as long as the rebuild
//! (about 1.5 s per 450,000 ledger rows on the development machine), during
//! which counting waits: apply it at a quiet moment on a large ledger.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE tenants ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE events ALTER COLUMN tenant TYPE text COLLATE "C",
                   ALTER COLUMN id TYPE text COLLATE "C",
                   ALTER COLUMN feature TYPE text COLLATE "C";
ALTER TABLE rollups ALTER COLUMN tenant TYPE text COLLATE "C",
                    ALTER COLUMN feature TYPE text COLLATE "C";
ALTER TABLE daily_rollups ALTER COLUMN tenant TYPE text COLLATE "C",
                          ALTER COLUMN feature TYPE text COLLATE "C";
ALTER TABLE slack_webhooks ALTER COLUMN tenant TYPE text COLLATE "C";
ALTER TABLE alerts ALTER COLUMN tenant TYPE text COLLATE "C";
ALTER TABLE api_keys ALTER COLUMN tenant TYPE text COLLATE "C";
"#;

const DOWN: &str = r#"
ALTER TABLE api_keys ALTER COLUMN tenant TYPE text COLLATE "default";
ALTER TABLE alerts ALTER COLUMN tenant TYPE text COLLATE "default";
ALTER TABLE slack_webhooks ALTER COLUMN tenant TYPE text COLLATE "default";
ALTER TABLE daily_rollups ALTER COLUMN tenant TYPE text COLLATE "default",
                          ALTER COLUMN feature TYPE text COLLATE "default";
ALTER TABLE rollups ALTER COLUMN tenant TYPE text COLLATE "default",
                    ALTER COLUMN feature TYPE text COLLATE "default";
ALTER TABLE events ALTER COLUMN tenant TYPE text COLLATE "default",
                   ALTER COLUMN id TYPE text COLLATE "default",
                   ALTER COLUMN feature TYPE text COLLATE "default";
ALTER TABLE tenants ALTER COLUMN id TYPE text COLLATE "default";
"#;

sql_migration!(UP, DOWN);
