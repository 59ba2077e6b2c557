//! Token classes: input, output, cache-read and cache-write tokens in the
//! ledger and both rollups, so that each class can be priced on its own.
//!
//! Every existing row is unclassified: its classes are 0 and all its tokens
//! are `total_tokens - (input + output + cache_read + cache_write)`, which
//! is exactly how an event sent with `tokens` alone is stored from now on.
//! Adding a column with a constant default rewrites no table, so an existing
//! database upgrades in place at once.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE events
    ADD COLUMN input_tokens bigint NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    ADD COLUMN output_tokens bigint NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    ADD COLUMN cache_read_tokens bigint NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
    ADD COLUMN cache_write_tokens bigint NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0);
ALTER TABLE rollups
    ADD COLUMN input_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN output_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN cache_read_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN cache_write_tokens bigint NOT NULL DEFAULT 0;
ALTER TABLE daily_rollups
    ADD COLUMN input_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN output_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN cache_read_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN cache_write_tokens bigint NOT NULL DEFAULT 0;
"#;

const DOWN: &str = r#"
ALTER TABLE daily_rollups DROP COLUMN input_tokens, DROP COLUMN output_tokens,
    DROP COLUMN cache_read_tokens, DROP COLUMN cache_write_tokens;
ALTER TABLE rollups DROP COLUMN input_tokens, DROP COLUMN output_tokens,
    DROP COLUMN cache_read_tokens, DROP COLUMN cache_write_tokens;
ALTER TABLE events DROP COLUMN input_tokens, DROP COLUMN output_tokens,
    DROP COLUMN cache_read_tokens, DROP COLUMN cache_write_tokens;
"#;

sql_migration!(UP, DOWN);
