//! Signed generic webhooks (issue 17): a tenant's own HTTPS endpoint, besides
//! or instead of Slack, and the outbox of deliveries to it.
//!
//! The alert row stays the one record per tenant, period and threshold; each
//! destination has its own delivery state, so Slack and the webhook retry,
//! give up and succeed independently and each gets one message per alert.
//! Slack's state is the alert row's own (`status`, `attempts`, ...), as
//! before; the webhook's is a `webhook_deliveries` row, created in the same
//! statement as the alert when the tenant has an enabled webhook. The
//! signing secret is kept as issued (`whsec_` + base64): the sender needs it
//! to sign, so it cannot be stored hashed.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = concat!(
    r#"
CREATE TABLE tenant_webhooks (
    tenant     text COLLATE "C" PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    url        text        NOT NULL,
    secret     text        NOT NULL CHECK (secret LIKE 'whsec\_%'),
    enabled    boolean     NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    alert_id        bigint      PRIMARY KEY REFERENCES alerts (id) ON DELETE CASCADE,
    tenant          text COLLATE "C" NOT NULL,
"#,
    delivery_state_columns!(),
    r#"
);
-- The sender's queue, as for the alerts themselves.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
"#
);

const DOWN: &str = r#"
DROP TABLE webhook_deliveries;
DROP TABLE tenant_webhooks;
"#;

sql_migration!(UP, DOWN);
