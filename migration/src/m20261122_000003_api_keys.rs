//! API keys: only a SHA-256 hash of each secret is stored, never the secret.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE api_keys (
    id           uuid        PRIMARY KEY,
    name         text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    -- SHA-256 of the secret; the secret itself is shown once, at creation.
    key_hash     bytea       NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    -- The secret's first characters, so that a listed key can be recognised.
    prefix       text        NOT NULL,
    scopes       text[]      NOT NULL
                 CHECK (cardinality(scopes) > 0
                        AND scopes <@ ARRAY['admin', 'ingest', 'read']::text[]),
    -- A key for one tenant may only ingest or read that tenant.
    tenant       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    CHECK (tenant IS NULL OR NOT ('admin' = ANY (scopes)))
);
"#;

sql_migration!(UP, "DROP TABLE api_keys");
