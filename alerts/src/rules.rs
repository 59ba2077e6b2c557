//! The threshold rule ([`crossed`]) and its two uses: deciding which quota
//! alerts are due ([`evaluate`], after the counting transaction has
//! committed and before its entries are acknowledged), and re-arming those a
//! configuration change left unreached ([`rearm`]).
//!
//! Counting takes no tenant lock: replicas whose batches share tenants
//! commit side by side. Each replica then [`evaluate`]s the tenants of its
//! *whole* batch (not only those it counted new events for) against the
//! committed period totals, in one statement for all of them, and records
//! the thresholds reached in the `alerts` outbox.
//!
//! Why no crossing is missed. A tenant's period total only grows, and under
//! READ COMMITTED every statement sees each transaction that became visible
//! before the statement started. Take any set of transactions whose tokens
//! together reach a threshold, and the one of them that became visible last:
//! its replica evaluates after its own COMMIT returned, so after all of them
//! were visible, and sees their sum. If that replica dies between COMMIT and
//! evaluation, its entries are not acknowledged; whoever counts them again
//! (a reclaim, or the replica restarted) counts nothing new but still
//! evaluates the whole batch, after its own (empty) COMMIT, so after the
//! lost evaluation would have run.
//!
//! Why none is doubled. Alert rows are unique on
//! `(tenant, period_start, threshold)` and inserted with
//! `ON CONFLICT DO NOTHING`, so any number of evaluations of one crossing,
//! by any number of replicas, leave one row (and count one in the metric).
//!
//! A tenant's settings change under the api's lock on its row, which also
//! re-evaluates after its COMMIT. The alert insert therefore takes a
//! `FOR KEY SHARE` lock on the tenant rows it fires for and re-checks that the
//! quota, billing day, time zone and threshold it decided with are still the
//! tenant's:
//! a decision made with settings the api is just replacing is dropped (the
//! api's own evaluation decides with the new ones). That lock is taken only
//! when a threshold is newly crossed, never while counting.
//!
//! Cost per batch is flat: one statement finds the time zones of the batch's
//! tenants, one reads, for every tenant of the batch whose thresholds have
//! not all fired this period, the period total as a sum of daily rollups
//! (and minute rollups for the partial UTC days of a period in another
//! zone; plain reads, no row every replica must lock); the
//! thresholds are then decided here, by [`crossed`], the one rule the api
//! re-arms alerts with too. A third statement runs only if one is crossed.

use chrono::{DateTime, Utc};
use domain::period::{BILLING_DAYS, BillingPeriod, zone_named};
use entity::{alerts, tenants};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QuerySelect,
    Statement, Value,
};
use store::usage::period_usage;

/// Every tenant of `$1` with the thresholds it has not fired in its current
/// period, and its period total. The periods come in as one row per billing
/// day and time zone of the batch's tenants (`$2`..`$5`, from
/// [`BillingPeriod`]), so the billing arithmetic stays in Rust and the
/// statement stays one; the total is `period_feature_totals`' (daily
/// rollups, and minute rollups for the partial UTC days of a zoned period).
const OPEN_THRESHOLDS: &str = r#"
WITH periods AS (
    SELECT *
    FROM unnest($2::smallint[], $3::text[], $4::timestamptz[], $5::timestamptz[])
         AS p(billing_day, timezone, period_start, period_end)
),
open AS (
    SELECT t.id AS tenant, t.monthly_quota AS quota, p.billing_day, p.timezone,
           p.period_start, p.period_end,
           ARRAY(SELECT th FROM unnest(t.alert_thresholds) AS th
                 WHERE NOT EXISTS (SELECT 1 FROM alerts a
                                   WHERE a.tenant = t.id AND a.period_start = p.period_start
                                     AND a.threshold = th AND a.kind = 'quota')) AS thresholds
    FROM tenants t JOIN periods p ON p.billing_day = t.billing_day AND p.timezone = t.timezone
    WHERE t.id = ANY ($1::text[])
)
SELECT o.tenant, o.quota, o.billing_day, o.timezone, o.period_start, o.period_end, o.thresholds,
       (SELECT coalesce(sum(u.tokens), 0)::bigint
        FROM period_feature_totals(o.tenant, o.period_start, o.period_end) AS u) AS usage_tokens
FROM open o
WHERE cardinality(o.thresholds) > 0
"#;

/// Records the quota alerts.
const INSERT_ALERTS: &str = crate::outbox::recording_alerts!(
    r#"
    INSERT INTO alerts (tenant, period_start, period_end, threshold, usage_tokens, quota, status)
    SELECT a.tenant, a.period_start, a.period_end, a.threshold, a.usage_tokens, a.quota,
           CASE WHEN EXISTS (SELECT 1 FROM slack_webhooks w WHERE w.tenant = a.tenant AND w.enabled)
                THEN 'pending' ELSE 'no_webhook' END
    FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::int[], $5::bigint[],
                $6::bigint[], $7::smallint[], $8::text[])
         AS a(tenant, period_start, period_end, threshold, usage_tokens, quota, billing_day,
              timezone)
    JOIN tenants t ON t.id = a.tenant AND t.monthly_quota = a.quota
                  AND t.billing_day = a.billing_day AND t.timezone = a.timezone
                  AND a.threshold = ANY (t.alert_thresholds)
    ORDER BY a.tenant, a.threshold
    FOR KEY SHARE OF t
"#
);

/// A threshold a tenant's usage has reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    pub tenant: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub threshold: i32,
    pub usage_tokens: i64,
    pub quota: i64,
    /// The billing day the period was computed with ...
    pub billing_day: i16,
    /// ... and the time zone.
    pub timezone: String,
}

/// Whether `usage` has reached `threshold` percent of `quota`, in integers.
pub fn crossed(usage: i64, quota: i64, threshold: i32) -> bool {
    i128::from(usage) * 100 >= i128::from(quota) * i128::from(threshold)
}

/// Records every alert that is due for `tenants` in the period containing
/// `now`, against committed totals: quota alerts here, budget alerts by
/// `budget::decide`; returns how many new alerts were recorded.
/// Safe to repeat: what has fired is skipped.
pub async fn evaluate<C: ConnectionTrait>(
    db: &C,
    tenants: &[String],
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    if tenants.is_empty() {
        return Ok(0);
    }
    // One read of the batch's tenants serves both kinds: the time zones of
    // the quota periods, and which tenants have a budget.
    let rows = tenants::Entity::find()
        .filter(tenants::Column::Id.is_in(tenants.iter().cloned()))
        .all(db)
        .await?;
    let mut zones: Vec<String> = rows.iter().map(|t| t.timezone.clone()).collect();
    zones.sort_unstable();
    zones.dedup();
    let periods: Vec<(i16, &String, BillingPeriod)> = zones
        .iter()
        .flat_map(|zone| {
            BILLING_DAYS.map(move |day| {
                (
                    day,
                    zone,
                    BillingPeriod::containing(now, day, zone_named(zone)),
                )
            })
        })
        .collect();
    let column = |f: fn(&BillingPeriod) -> DateTime<Utc>| -> Value {
        Value::from(periods.iter().map(|(_, _, p)| f(p)).collect::<Vec<_>>())
    };
    let budgeted = rows
        .into_iter()
        .filter(|t| t.monthly_budget_micros.is_some())
        .collect();
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            OPEN_THRESHOLDS,
            [
                Value::from(tenants.to_vec()),
                Value::from(periods.iter().map(|(d, _, _)| *d).collect::<Vec<_>>()),
                Value::from(
                    periods
                        .iter()
                        .map(|(_, z, _)| (*z).clone())
                        .collect::<Vec<_>>(),
                ),
                column(|p| p.start),
                column(|p| p.end),
            ],
        ))
        .await?;
    let mut crossings = Vec::new();
    for row in rows {
        let usage_tokens: i64 = row.try_get("", "usage_tokens")?;
        let quota: i64 = row.try_get("", "quota")?;
        let thresholds: Vec<i32> = row.try_get("", "thresholds")?;
        for threshold in thresholds {
            if crossed(usage_tokens, quota, threshold) {
                crossings.push(Crossing {
                    tenant: row.try_get("", "tenant")?,
                    period_start: row.try_get("", "period_start")?,
                    period_end: row.try_get("", "period_end")?,
                    threshold,
                    usage_tokens,
                    quota,
                    billing_day: row.try_get("", "billing_day")?,
                    timezone: row.try_get("", "timezone")?,
                });
            }
        }
    }
    let quota_alerts = record(db, &crossings).await?;
    Ok(quota_alerts + crate::budget::decide(db, budgeted, now).await?)
}

async fn record<C: ConnectionTrait>(db: &C, crossings: &[Crossing]) -> Result<u64, DbErr> {
    if crossings.is_empty() {
        return Ok(0);
    }
    let values = [
        Value::from(
            crossings
                .iter()
                .map(|c| c.tenant.clone())
                .collect::<Vec<_>>(),
        ),
        Value::from(crossings.iter().map(|c| c.period_start).collect::<Vec<_>>()),
        Value::from(crossings.iter().map(|c| c.period_end).collect::<Vec<_>>()),
        Value::from(crossings.iter().map(|c| c.threshold).collect::<Vec<_>>()),
        Value::from(crossings.iter().map(|c| c.usage_tokens).collect::<Vec<_>>()),
        Value::from(crossings.iter().map(|c| c.quota).collect::<Vec<_>>()),
        Value::from(crossings.iter().map(|c| c.billing_day).collect::<Vec<_>>()),
        Value::from(
            crossings
                .iter()
                .map(|c| c.timezone.clone())
                .collect::<Vec<_>>(),
        ),
    ];
    crate::outbox::insert_alerts(db, INSERT_ALERTS, values).await
}

/// Re-arms `tenant`'s alerts after its configuration was saved, in the
/// saving transaction: this period's alerts whose threshold the usage no
/// longer reaches (after a quota raise) are deleted, so that they fire again
/// when usage reaches them (budget alerts likewise, by
/// [`crate::budget::rearm`]). The caller [`evaluate`]s once that is committed,
/// which records those now reached at once.
pub async fn rearm<C: ConnectionTrait>(
    db: &C,
    tenant: tenants::Model,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let id = tenant.id.clone();
    let Some(usage) = period_usage(db, vec![tenant], now).await?.pop() else {
        return Ok(());
    };
    crate::budget::rearm(db, &usage).await?;
    let (total, quota) = (usage.total_tokens(), usage.tenant.monthly_quota);
    let fired: Vec<i32> = alerts::Entity::find()
        .select_only()
        .column(alerts::Column::Threshold)
        .filter(alerts::Column::Tenant.eq(id.as_str()))
        .filter(alerts::Column::PeriodStart.eq(usage.period.start))
        .filter(alerts::Column::Kind.eq(alerts::Kind::Quota))
        .into_tuple()
        .all(db)
        .await?;
    let unreached: Vec<i32> = fired
        .into_iter()
        .filter(|&threshold| !crossed(total, quota, threshold))
        .collect();
    if !unreached.is_empty() {
        alerts::Entity::delete_many()
            .filter(alerts::Column::Tenant.eq(id.as_str()))
            .filter(alerts::Column::PeriodStart.eq(usage.period.start))
            .filter(alerts::Column::Threshold.is_in(unreached))
            .filter(alerts::Column::Kind.eq(alerts::Kind::Quota))
            .exec(db)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::crossed;

    #[test]
    fn a_threshold_is_crossed_at_exactly_its_percent() {
        assert!(!crossed(79_999, 100_000, 80));
        assert!(crossed(80_000, 100_000, 80));
        assert!(crossed(100_001, 100_000, 100));
        assert!(!crossed(1, 3, 34));
        assert!(crossed(i64::MAX, i64::MAX, 100), "no overflow");
    }
}
