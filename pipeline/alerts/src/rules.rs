//! The threshold rule ([`crossed`]) and its two uses: recording the alerts
//! that became due as events are counted ([`evaluate`]), and re-arming
//! those a configuration change left unreached ([`rearm`]).
//!
//! **Evaluation** runs inside the rollup transaction.
//! For every tenant a batch counted new events for, the tenant row is locked
//! (`FOR NO KEY UPDATE`, in id order) before its period usage is read. Under
//! READ COMMITTED each statement sees what committed before it started, so
//! two replicas counting the same tenant at once take turns here and the
//! second sees the first's tokens: a threshold crossed by their sum is not
//! missed. Alert rows are unique on `(tenant, period_start, threshold)` and
//! inserted with `ON CONFLICT DO NOTHING`, so re-evaluation never duplicates.

use chrono::{DateTime, Utc};
use entity::{alerts, tenants, usage::period_usage};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, Value, sea_query::LockType,
};

const INSERT_ALERTS: &str = r#"
INSERT INTO alerts (tenant, period_start, period_end, threshold, usage_tokens, quota, status)
SELECT a.tenant, a.period_start, a.period_end, a.threshold, a.usage_tokens, a.quota,
       CASE WHEN EXISTS (SELECT 1 FROM slack_webhooks w WHERE w.tenant = a.tenant AND w.enabled)
            THEN 'pending' ELSE 'no_webhook' END
FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::int[], $5::bigint[], $6::bigint[])
     AS a(tenant, period_start, period_end, threshold, usage_tokens, quota)
ON CONFLICT (tenant, period_start, threshold) DO NOTHING
"#;

/// A threshold a tenant's usage has reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    pub tenant: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub threshold: i32,
    pub usage_tokens: i64,
    pub quota: i64,
}

/// Whether `usage` has reached `threshold` percent of `quota`, in integers.
pub fn crossed(usage: i64, quota: i64, threshold: i32) -> bool {
    i128::from(usage) * 100 >= i128::from(quota) * i128::from(threshold)
}

/// Records every alert that is due for `tenants` in the period containing
/// `now`; returns how many new alerts were recorded.
pub async fn evaluate<C: ConnectionTrait>(
    db: &C,
    tenants: &[String],
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    if tenants.is_empty() {
        return Ok(0);
    }
    let locked = tenants::Entity::find()
        .filter(tenants::Column::Id.is_in(tenants.iter().cloned()))
        .order_by_asc(tenants::Column::Id)
        .lock(LockType::NoKeyUpdate)
        .all(db)
        .await?;
    let crossings: Vec<Crossing> = period_usage(db, locked, now)
        .await?
        .into_iter()
        .flat_map(|usage| {
            let total = usage.total_tokens();
            let quota = usage.tenant.monthly_quota;
            usage
                .tenant
                .alert_thresholds
                .iter()
                .filter(|&&threshold| crossed(total, quota, threshold))
                .map(|&threshold| Crossing {
                    tenant: usage.tenant.id.clone(),
                    period_start: usage.period.start,
                    period_end: usage.period.end,
                    threshold,
                    usage_tokens: total,
                    quota,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    record(db, &crossings).await
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
    ];
    let result = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            INSERT_ALERTS,
            values,
        ))
        .await?;
    Ok(result.rows_affected())
}

/// Re-arms `tenant`'s alerts after its configuration was saved, in the
/// caller's transaction: this period's alerts whose threshold the usage no
/// longer reaches (after a quota raise) are deleted, so that they fire again
/// when usage reaches them, and those now reached are recorded at once.
pub async fn rearm<C: ConnectionTrait>(
    db: &C,
    tenant: tenants::Model,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let id = tenant.id.clone();
    let Some(usage) = period_usage(db, vec![tenant], now).await?.pop() else {
        return Ok(());
    };
    let (total, quota) = (usage.total_tokens(), usage.tenant.monthly_quota);
    let fired: Vec<i32> = alerts::Entity::find()
        .select_only()
        .column(alerts::Column::Threshold)
        .filter(alerts::Column::Tenant.eq(id.as_str()))
        .filter(alerts::Column::PeriodStart.eq(usage.period.start))
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
            .exec(db)
            .await?;
    }
    evaluate(db, &[id], now).await?;
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
