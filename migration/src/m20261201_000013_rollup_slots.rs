//! Partial rollup rows: a `slot` in the key of the minute and daily rollups.
//!
//! Every batch upserts the rows of its tenants' features for the current
//! minute and day, and holds their row locks until it commits; replicas
//! counting the same tenants would take turns on the same rows (measured:
//! 3 concurrent writers over 200 tenants spent about a third of their time
//! waiting on `Lock:transactionid`, at half the throughput of 1 tenant).
//! With the slot in the key, each PostgreSQL connection adds into rows of
//! its own (`pg_backend_pid() % 64`, see `pipeline/src/writer.rs`), and
//! readers sum over the slots, as every usage query already sums rows.
//!
//! Existing rows get slot 0; adding a column with a constant default
//! rewrites no table, the new primary keys are built under an exclusive lock.
//! Down merges the slots back into one row per key before dropping them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE rollups ADD COLUMN slot smallint NOT NULL DEFAULT 0;
ALTER TABLE rollups DROP CONSTRAINT rollups_pkey,
                    ADD PRIMARY KEY (tenant, feature, minute, slot);
ALTER TABLE daily_rollups ADD COLUMN slot smallint NOT NULL DEFAULT 0;
ALTER TABLE daily_rollups DROP CONSTRAINT daily_rollups_pkey,
                          ADD PRIMARY KEY (tenant, feature, day, slot);
"#;

/// Merges the slots of the rollup table `$table` (aliased `$alias`, keyed
/// by `$time` beside tenant and feature) into slot 0, then drops the slot.
#[rustfmt::skip]
macro_rules! merge_slots {
    ($table:literal AS $alias:literal, $time:literal) => {
        concat!(
"WITH merged AS (
    DELETE FROM ", $table, " WHERE slot <> 0
    RETURNING tenant, feature, ", $time, ", total_tokens, event_count, updated_at
)
INSERT INTO ", $table, " AS ", $alias, " (tenant, feature, ", $time, ", slot, total_tokens, event_count, updated_at)
SELECT tenant, feature, ", $time, ", 0, sum(total_tokens), sum(event_count), max(updated_at)
FROM merged GROUP BY tenant, feature, ", $time, "
ON CONFLICT (tenant, feature, ", $time, ", slot) DO UPDATE
SET total_tokens = ", $alias, ".total_tokens + excluded.total_tokens,
    event_count = ", $alias, ".event_count + excluded.event_count,
    updated_at = greatest(", $alias, ".updated_at, excluded.updated_at);
ALTER TABLE ", $table, " DROP CONSTRAINT ", $table, "_pkey;
ALTER TABLE ", $table, " DROP COLUMN slot;
ALTER TABLE ", $table, " ADD PRIMARY KEY (tenant, feature, ", $time, ");
")
    };
}

const DOWN: &str = concat!(
    "\n",
    merge_slots!("rollups" AS "r", "minute"),
    merge_slots!("daily_rollups" AS "d", "day")
);

sql_migration!(UP, DOWN);
