//! Budget alerts: a tenant's cost crossing a threshold of its monthly
//! budget, beside quota alerts and under the same rule and guarantees.
//!
//! A tenant with a `monthly_budget_micros` gets its thresholds applied to
//! cost as well: each crossing is an alert row of kind `budget`, unique per
//! tenant, period, threshold and kind, inserted with `ON CONFLICT DO
//! NOTHING`. `decide` runs wherever quota alerts are evaluated (it is
//! called by [`crate::rules::evaluate`]: after the counting COMMIT, before
//! the entries are acknowledged, and after a tenant's settings are saved),
//! so the argument of [`crate::rules`] carries over: cost only grows as
//! tokens are counted (prices are never negative), and the evaluation that
//! runs after the last contributing COMMIT sees their sum. Prices can also
//! change what was counted (a back-dated version): adding a price
//! evaluates every tenant with a budget ([`evaluate_all`]).
//!
//! Costs come from `store::usage::period_usage`, the very figures the
//! usage api shows. Tenants without a budget cost one indexed lookup per
//! batch and nothing more.

use chrono::{DateTime, Utc};
use domain::money::Budget;
use entity::{
    alerts::{self, Kind},
    tenants,
};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, Value};
use store::usage::{PeriodUsage, period_usage};

/// Records the budget alerts, and their signed-webhook deliveries as
/// [`crate::rules`] does for quota alerts.
const INSERT_ALERTS: &str = crate::outbox::recording_alerts!(
    r#"
    INSERT INTO alerts (tenant, period_start, period_end, threshold, usage_tokens, quota, status,
                        kind, cost, budget)
    SELECT a.tenant, a.period_start, a.period_end, a.threshold, a.usage_tokens, t.monthly_quota,
           CASE WHEN EXISTS (SELECT 1 FROM slack_webhooks w WHERE w.tenant = a.tenant AND w.enabled)
                THEN 'pending' ELSE 'no_webhook' END,
           'budget', a.cost, a.budget
    FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::int[], $5::bigint[],
                $6::text[], $7::text[], $8::bigint[], $9::smallint[], $10::text[])
         AS a(tenant, period_start, period_end, threshold, usage_tokens, cost, budget,
              budget_micros, billing_day, timezone)
    JOIN tenants t ON t.id = a.tenant AND t.monthly_budget_micros = a.budget_micros
                  AND t.billing_day = a.billing_day AND t.timezone = a.timezone
                  AND a.threshold = ANY (t.alert_thresholds)
    ORDER BY a.tenant, a.threshold
    FOR KEY SHARE OF t
"#
);

/// `decide` for every tenant with a budget: after prices changed.
pub async fn evaluate_all<C: ConnectionTrait>(db: &C, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let budgeted = tenants::Entity::find()
        .filter(tenants::Column::MonthlyBudgetMicros.is_not_null())
        .all(db)
        .await?;
    decide(db, budgeted, now).await
}

/// The thresholds `usage`'s cost has reached, with its budget.
fn reached(usage: &PeriodUsage) -> Option<(Budget, Vec<i32>)> {
    let budget = usage.budget()?;
    let cost = usage.cost();
    let thresholds = usage
        .tenant
        .alert_thresholds
        .iter()
        .copied()
        .filter(|&threshold| cost.reached(budget, threshold))
        .collect();
    Some((budget, thresholds))
}

/// Records every budget alert due in the period containing `now` for the
/// `budgeted` tenants (as read: the insert re-checks their budget, billing
/// day and zone); returns how many were new. Safe to repeat.
pub(crate) async fn decide<C: ConnectionTrait>(
    db: &C,
    budgeted: Vec<tenants::Model>,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    if budgeted.is_empty() {
        return Ok(0);
    }
    let mut columns = Columns::default();
    for usage in period_usage(db, budgeted, now).await? {
        let Some((budget, thresholds)) = reached(&usage) else {
            continue;
        };
        for threshold in thresholds {
            columns.push(&usage, budget, threshold);
        }
    }
    if columns.tenant.is_empty() {
        return Ok(0);
    }
    crate::outbox::insert_alerts(db, INSERT_ALERTS, columns.values()).await
}

/// The crossings to insert, one array per column.
#[derive(Default)]
struct Columns {
    tenant: Vec<String>,
    period_start: Vec<DateTime<Utc>>,
    period_end: Vec<DateTime<Utc>>,
    threshold: Vec<i32>,
    usage_tokens: Vec<i64>,
    cost: Vec<String>,
    budget: Vec<String>,
    budget_micros: Vec<i64>,
    billing_day: Vec<i16>,
    timezone: Vec<String>,
}

impl Columns {
    fn push(&mut self, usage: &PeriodUsage, budget: Budget, threshold: i32) {
        self.tenant.push(usage.tenant.id.clone());
        self.period_start.push(usage.period.start);
        self.period_end.push(usage.period.end);
        self.threshold.push(threshold);
        self.usage_tokens.push(usage.total_tokens());
        self.cost.push(usage.cost().to_string());
        self.budget.push(budget.to_string());
        self.budget_micros.push(budget.micros());
        self.billing_day.push(usage.tenant.billing_day);
        self.timezone.push(usage.tenant.timezone.clone());
    }

    fn values(self) -> [Value; 10] {
        [
            self.tenant.into(),
            self.period_start.into(),
            self.period_end.into(),
            self.threshold.into(),
            self.usage_tokens.into(),
            self.cost.into(),
            self.budget.into(),
            self.budget_micros.into(),
            self.billing_day.into(),
            self.timezone.into(),
        ]
    }
}

/// Re-arms `usage`'s budget alerts of this period that its cost no longer
/// reaches (a raised or removed budget, a cheaper back-dated price), in the
/// caller's transaction, so that they fire again when reached.
pub async fn rearm<C: ConnectionTrait>(db: &C, usage: &PeriodUsage) -> Result<(), DbErr> {
    let still = reached(usage).map(|(_, t)| t).unwrap_or_default();
    let fired: Vec<i32> = alerts::Entity::find()
        .select_only()
        .column(alerts::Column::Threshold)
        .filter(alerts::Column::Tenant.eq(usage.tenant.id.as_str()))
        .filter(alerts::Column::PeriodStart.eq(usage.period.start))
        .filter(alerts::Column::Kind.eq(Kind::Budget))
        .into_tuple()
        .all(db)
        .await?;
    let unreached: Vec<i32> = fired.into_iter().filter(|t| !still.contains(t)).collect();
    if !unreached.is_empty() {
        alerts::Entity::delete_many()
            .filter(alerts::Column::Tenant.eq(usage.tenant.id.as_str()))
            .filter(alerts::Column::PeriodStart.eq(usage.period.start))
            .filter(alerts::Column::Threshold.is_in(unreached))
            .filter(alerts::Column::Kind.eq(Kind::Budget))
            .exec(db)
            .await?;
    }
    Ok(())
}
