//! The alert outbox: how an alert is recorded, once per tenant, period,
//! threshold and kind, together with its pending deliveries, in the
//! transaction that decided it. Quota alerts ([`crate::rules`]) and budget
//! alerts ([`crate::budget`]) both record through here; the
//! [`crate::sender`] then delivers what it holds.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};

/// An alert insert (`$insert`, up to its `ORDER BY ... FOR KEY SHARE`)
/// that records each new alert once per tenant, period, threshold and kind,
/// and for each new one whose tenant has an enabled signed webhook its
/// delivery there ([`crate::sender`]), answering how many it `recorded`,
/// and how many of those have nowhere to go (`undirected`: neither Slack
/// nor a signed webhook) ([`insert_alerts`]); quota alerts in [`crate::rules`],
/// budget alerts in [`crate::budget`]. Each destination then gets one message per
/// alert.
macro_rules! recording_alerts {
    ($insert:literal) => {
        concat!(
            "WITH inserted AS (\n",
            $insert,
            "    ON CONFLICT (tenant, period_start, threshold, kind) DO NOTHING
    RETURNING id, tenant, status
),
deliveries AS (
    INSERT INTO webhook_deliveries (alert_id, tenant)
    SELECT i.id, i.tenant FROM inserted i
    JOIN tenant_webhooks w ON w.tenant = i.tenant AND w.enabled
    RETURNING alert_id
)
SELECT count(*) AS recorded,
       count(*) FILTER (WHERE i.status = 'no_webhook'
                        AND i.id NOT IN (SELECT alert_id FROM deliveries)) AS undirected
FROM inserted i
"
        )
    };
}
pub(crate) use recording_alerts;

/// Runs an alert insert that answers how many alerts it `recorded` (quota
/// alerts from [`crate::rules`], budget alerts from [`crate::budget`]), counting those with
/// nowhere to go in [`crate::metrics::WITHOUT_DESTINATION`].
pub(crate) async fn insert_alerts<C: ConnectionTrait>(
    db: &C,
    insert: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<u64, DbErr> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            insert,
            values,
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the alert insert returned no row".into()))?;
    let recorded: i64 = row.try_get("", "recorded")?;
    let undirected: i64 = row.try_get("", "undirected")?;
    if undirected > 0 {
        metrics::counter!(crate::metrics::WITHOUT_DESTINATION).increment(undirected as u64);
    }
    Ok(recorded as u64)
}
