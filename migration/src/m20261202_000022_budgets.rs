//! Budgets: a tenant's optional monthly budget, and budget alerts beside
//! quota alerts in the outbox.
//!
//! The budget is held in micro-units of the currency (6 decimals, exact).
//! Existing alerts are quota alerts; an alert is now unique per tenant,
//! period, threshold and kind, so that a budget crossing fires once of its
//! own. A budget alert records the cost and budget at its crossing as the
//! exact decimal strings the api shows.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE tenants
    ADD COLUMN monthly_budget_micros bigint CHECK (monthly_budget_micros > 0);
ALTER TABLE alerts
    ADD COLUMN kind text NOT NULL DEFAULT 'quota' CHECK (kind IN ('quota', 'budget')),
    ADD COLUMN cost text,
    ADD COLUMN budget text;
ALTER TABLE alerts ADD CONSTRAINT alerts_tenant_period_threshold_kind_key
    UNIQUE (tenant, period_start, threshold, kind);
ALTER TABLE alerts DROP CONSTRAINT alerts_tenant_period_start_threshold_key;
"#;

const DOWN: &str = r#"
DELETE FROM alerts WHERE kind = 'budget';
ALTER TABLE alerts ADD CONSTRAINT alerts_tenant_period_start_threshold_key
    UNIQUE (tenant, period_start, threshold);
ALTER TABLE alerts DROP CONSTRAINT alerts_tenant_period_threshold_kind_key;
ALTER TABLE alerts DROP COLUMN kind, DROP COLUMN cost, DROP COLUMN budget;
ALTER TABLE tenants DROP COLUMN monthly_budget_micros;
"#;

sql_migration!(UP, DOWN);
