//! Price versions: per feature, what a million tokens of each class cost
//! from a moment on. Versions are only ever added (a correction is a new
//! version), so that any cost can be recomputed, and re-priced by adding a
//! back-dated one.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE prices (
    id                      bigserial     PRIMARY KEY,
    feature                 text          COLLATE "C" NOT NULL,
    effective_from          timestamptz   NOT NULL,
    input_per_million       numeric(19,6) NOT NULL CHECK (input_per_million >= 0),
    output_per_million      numeric(19,6) NOT NULL CHECK (output_per_million >= 0),
    cache_read_per_million  numeric(19,6) NOT NULL CHECK (cache_read_per_million >= 0),
    cache_write_per_million numeric(19,6) NOT NULL CHECK (cache_write_per_million >= 0),
    created_at              timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX prices_feature_idx ON prices (feature, effective_from, id);
"#;

sql_migration!(UP, "DROP TABLE prices");
