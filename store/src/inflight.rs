//! Which accepted events the ledger already holds: how the api learns
//! that an event it holds room for "in flight" has been counted (see the
//! api's `limits` module for why this, and not the pipeline, moves an
//! event from in-flight to counted). One statement for any number of
//! events of any tenants, one primary-key probe each.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};

/// The ledger keys among the pairs, joined on the primary key
/// `(tenant, id)`. A voided event or a tombstone is held too: either way
/// the rollups hold what the event will ever count.
const COUNTED: &str = r#"
SELECT e.tenant, e.id
FROM unnest($1::text[], $2::text[]) AS x(tenant, id)
JOIN events e ON e.tenant = x.tenant AND e.id = x.id
"#;

/// The `(tenant, id)` pairs of `events` that the ledger holds, as seen by
/// `db` (inside a transaction: as of its snapshot).
pub async fn counted<C: ConnectionTrait>(
    db: &C,
    events: &[(String, String)],
) -> Result<Vec<(String, String)>, DbErr> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let (tenants, ids): (Vec<String>, Vec<String>) = events.iter().cloned().unzip();
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            COUNTED,
            [Value::from(tenants), Value::from(ids)],
        ))
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("", "tenant")?, row.try_get("", "id")?)))
        .collect()
}
