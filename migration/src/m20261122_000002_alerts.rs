//! The quota-alert outbox.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = concat!(
    r#"
CREATE TABLE alerts (
    id              bigserial   PRIMARY KEY,
    tenant          text        NOT NULL,
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    threshold       integer     NOT NULL CHECK (threshold > 0),
    usage_tokens    bigint      NOT NULL,
    quota           bigint      NOT NULL,
"#,
    delivery_state_columns!(),
    r#",
    -- At most one alert per tenant, period and threshold, however many
    -- replicas evaluate it and however often.
    UNIQUE (tenant, period_start, threshold)
);
-- The sender's queue.
CREATE INDEX alerts_due_idx ON alerts (next_attempt_at) WHERE status = 'pending';
CREATE INDEX alerts_tenant_idx ON alerts (tenant, created_at DESC);
"#
);

sql_migration!(UP, "DROP TABLE alerts");
