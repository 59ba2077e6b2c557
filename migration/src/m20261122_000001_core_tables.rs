//! Tenants, the event ledger, minute and daily rollups, Slack webhooks.
//!
//! Written as SQL because the schema is PostgreSQL's own (arrays, CHECKs,
//! `timestamptz`) and reads best as such.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A rollup table of `$time` (declared `$time_column`, aligned), with its
/// index for a tenant's range of times: the minute and the daily rollups
/// differ in nothing else.
#[rustfmt::skip]
macro_rules! rollup_table {
    ($table:literal, $time:literal, $time_column:literal) => {
        concat!(
"CREATE TABLE ", $table, " (
    tenant       text        NOT NULL,
    feature      text        NOT NULL,
    ", $time_column, " NOT NULL,
    total_tokens bigint      NOT NULL,
    event_count  bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, feature, ", $time, ")
);
CREATE INDEX ", $table, "_tenant_", $time, "_idx ON ", $table, " (tenant, ", $time, ");
")
    };
}

const UP: &str = concat!(
    r#"
CREATE TABLE tenants (
    id               text        PRIMARY KEY,
    name             text        NOT NULL,
    monthly_quota    bigint      NOT NULL CHECK (monthly_quota > 0),
    billing_day      smallint    NOT NULL DEFAULT 1 CHECK (billing_day BETWEEN 1 AND 28),
    alert_thresholds integer[]   NOT NULL DEFAULT '{80}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The ledger and dedupe window: a redelivered event conflicts on the key.
CREATE TABLE events (
    tenant      text        NOT NULL,
    id          text        NOT NULL,
    feature     text        NOT NULL,
    tokens      bigint      NOT NULL CHECK (tokens > 0),
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, id)
);
-- Retention deletes by receipt time.
CREATE INDEX events_received_at_idx ON events (received_at);

"#,
    rollup_table!("rollups", "minute", "minute       timestamptz"),
    "\n",
    rollup_table!("daily_rollups", "day", "day          date       "),
    r#"
CREATE TABLE slack_webhooks (
    tenant     text        PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    url        text        NOT NULL,
    enabled    boolean     NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
"#
);

const DOWN: &str = r#"
DROP TABLE slack_webhooks;
DROP TABLE daily_rollups;
DROP TABLE rollups;
DROP TABLE events;
DROP TABLE tenants;
"#;

sql_migration!(UP, DOWN);
