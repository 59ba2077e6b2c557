//! The exactly-once effect: one batch of events into the ledger and the
//! rollups in one PostgreSQL statement, in one transaction. It takes no
//! tenant lock, so replicas whose batches share tenants commit side by side;
//! the quota alerts are decided after COMMIT (`alerts::rules::evaluate`).
//!
//! The events go in as one array per column (`unnest`), so a batch of any
//! size is a fixed number of bind parameters. An id is counted with the
//! values of its first committed event, and any later event with the same
//! (tenant, id) is ignored, whatever its values: repeated ids inside the
//! batch are removed first, here (the batch's earliest entry stays), and the
//! ledger insert skips ids it already holds (`ON CONFLICT DO NOTHING`).
//! Across batches "first committed" is usually the earliest entry, but not
//! always: replicas commit concurrently and a taken-over entry is committed
//! late. Clients must therefore send an id again only with the same values
//! (docs/api.md, "Record one event"). Only the rows the insert really added are
//! aggregated into the minute and daily rollups. The upserts take their
//! rows in key order, so concurrent workers lock rollup rows in the same
//! order and cannot deadlock. Each PostgreSQL connection adds into rollup
//! rows of its own (the key's `slot`, `pg_backend_pid() % 64`), so replicas
//! counting the same tenants do not wait for each other's row locks;
//! readers sum over the slots. A tenant seen for the first time is created
//! with the default quota: events are money, and are counted whether or not
//! the tenant was configured.
//!
//! Voids go through the same ledger key (migration `m20261202_000033`): a
//! batch that holds any is written as two statements in one transaction,
//! its events first, then its voids. A void of a counted, live event marks
//! it voided and subtracts its tokens (and token classes) from the rollup rows of its minute and
//! day (into this connection's slot); a void of an unknown id inserts a
//! tombstone, on which the event conflicts when it comes; a void of a voided
//! id or a tombstone changes nothing. Since an event and its void meet on
//! one key, concurrent replicas serialise on it, and a redelivered void is
//! as harmless as a redelivered event.

use std::sync::LazyLock;

use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, RuntimeErr, Statement, TransactionSession, TransactionTrait,
    Value,
};

use stream::EventRecord;

/// The ledger part of a batch of events: the tenants it creates (`$13`, distinct
/// and in order) and the events it inserts (CTE `inserted`). The events come
/// deduplicated and in key order ([`ledger_order`]): PostgreSQL neither sorts
/// nor deduplicates them again, and `unnest` yields them in array order, so
/// the insert takes its key locks in key order.
const WRITE_LEDGER: &str = r#"
WITH new_tenants AS (
    INSERT INTO tenants (id, name, monthly_quota, alert_thresholds)
    SELECT tenant, tenant, $7::bigint, $8::int[] FROM unnest($13::text[]) AS t(tenant)
    ON CONFLICT (id) DO NOTHING
),
inserted AS (
    INSERT INTO events (tenant, id, feature, tokens, occurred_at, received_at,
                        input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
    SELECT tenant, id, feature, tokens,
           'epoch'::timestamptz + occurred_ms * interval '1 millisecond',
           'epoch'::timestamptz + received_ms * interval '1 millisecond',
           input_tokens, output_tokens, cache_read_tokens, cache_write_tokens
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[],
                $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[])
         AS t(tenant, id, feature, tokens, occurred_ms, received_ms,
              input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
    ON CONFLICT (tenant, id) DO NOTHING
    RETURNING tenant, feature, tokens, occurred_at,
              input_tokens, output_tokens, cache_read_tokens, cache_write_tokens
),
"#;

/// The ledger part of a batch of voids: the events it marks voided or the
/// tombstones it leaves (CTE `voided`), and those of them that had been
/// counted (CTE `live`).
const VOID_LEDGER: &str = r#"
WITH input AS (
    SELECT DISTINCT ON (tenant, id) tenant, id, received_ms
    FROM unnest($1::text[], $2::text[], $3::bigint[]) AS t(tenant, id, received_ms)
    ORDER BY tenant, id
),
voided AS (
    INSERT INTO events AS e (tenant, id, feature, tokens, occurred_at, received_at, voided_at)
    SELECT tenant, id, '', 0,
           'epoch'::timestamptz + received_ms * interval '1 millisecond',
           'epoch'::timestamptz + received_ms * interval '1 millisecond', now()
    FROM input ORDER BY tenant, id
    ON CONFLICT (tenant, id) DO UPDATE SET voided_at = now()
    WHERE e.voided_at IS NULL
    RETURNING e.tenant, e.feature, e.tokens, e.occurred_at,
              e.input_tokens, e.output_tokens, e.cache_read_tokens, e.cache_write_tokens
),
live AS (
    SELECT * FROM voided WHERE tokens > 0
),
"#;

/// The minute and daily rollup upserts of the rows of CTE `source` (tenant,
/// feature, tokens, occurred_at and the four token classes), added with
/// `sign` (`""` counts them, `"-"` takes them away), into this connection's
/// slot, in key order.
fn rollup_upserts(source: &str, sign: &str) -> String {
    [
        (
            "minute_rollups",
            "rollups",
            "r",
            "minute",
            "date_trunc('minute', occurred_at, 'UTC')",
        ),
        (
            "daily_rollups",
            "daily_rollups",
            "d",
            "day",
            "(occurred_at AT TIME ZONE 'UTC')::date",
        ),
    ]
    .map(|(cte, table, t, key, bucket)| {
        format!(
            "{cte} AS (
    INSERT INTO {table} AS {t} (tenant, feature, {key}, slot, total_tokens, event_count,
        input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
    SELECT tenant, feature, {bucket}, pg_backend_pid() % 64,
           {sign}sum(tokens)::bigint, {sign}count(*), {sign}sum(input_tokens)::bigint,
           {sign}sum(output_tokens)::bigint, {sign}sum(cache_read_tokens)::bigint,
           {sign}sum(cache_write_tokens)::bigint
    FROM {source} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (tenant, feature, {key}, slot) DO UPDATE
    SET total_tokens = {t}.total_tokens + excluded.total_tokens,
        event_count = {t}.event_count + excluded.event_count,
        input_tokens = {t}.input_tokens + excluded.input_tokens,
        output_tokens = {t}.output_tokens + excluded.output_tokens,
        cache_read_tokens = {t}.cache_read_tokens + excluded.cache_read_tokens,
        cache_write_tokens = {t}.cache_write_tokens + excluded.cache_write_tokens,
        updated_at = now()
)"
        )
    })
    .join(",\n")
}

/// A batch of events in one statement: the ledger, then the rollups of
/// what it inserted.
static WRITE_BATCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{WRITE_LEDGER}\n{}\nSELECT count(*) AS inserted FROM inserted",
        rollup_upserts("inserted", "")
    )
});

/// A batch of voids in one statement: the ledger, then the rollups of the
/// counted events it voided, taken away.
static VOID_BATCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{VOID_LEDGER}\n{}\nSELECT count(*) AS voided FROM voided",
        rollup_upserts("live", "-")
    )
});

/// How a tenant first seen in the stream is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTenants {
    pub monthly_quota: i64,
    pub alert_thresholds: Vec<i32>,
}

/// What a committed batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Events counted for the first time.
    pub counted: u64,
    /// Events the ledger already held (redeliveries, client retries, or a
    /// tombstone's id).
    pub duplicates: u64,
    /// Voids that took effect: an event voided, or a tombstone left.
    pub voided: u64,
}

/// Counts a batch of events and voids exactly once, in one transaction.
/// Safe to call again with the same records: the second call changes
/// nothing. The caller evaluates alerts for [`tenants_of`] the batch once
/// this returns.
pub async fn write_batch<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    records: &[EventRecord],
    new_tenants: &NewTenants,
) -> Result<Written, DbErr> {
    let (voids, events): (Vec<&EventRecord>, Vec<&EventRecord>) =
        records.iter().partition(|r| r.void);
    if voids.is_empty() {
        // One statement is one transaction of its own: no BEGIN and COMMIT
        // round trips.
        let counted = write_events(db, &events, new_tenants).await?;
        return Ok(written(events.len(), counted, 0));
    }
    let txn = db.begin().await?;
    let counted = write_events(&txn, &events, new_tenants).await?;
    let voided = write_voids(&txn, &voids).await?;
    txn.commit().await?;
    Ok(written(events.len(), counted, voided))
}

impl std::ops::AddAssign for Written {
    fn add_assign(&mut self, other: Self) {
        self.counted += other.counted;
        self.duplicates += other.duplicates;
        self.voided += other.voided;
    }
}

fn written(events: usize, counted: u64, voided: u64) -> Written {
    Written {
        counted,
        duplicates: events as u64 - counted,
        voided,
    }
}

/// The events' statement; how many it counted.
async fn write_events<C: ConnectionTrait>(
    db: &C,
    records: &[&EventRecord],
    new_tenants: &NewTenants,
) -> Result<u64, DbErr> {
    if records.is_empty() {
        return Ok(0);
    }
    let records = ledger_order(records);
    let tenants = tenants_of(records.iter().copied());
    let strings = |f: fn(&EventRecord) -> &String| -> Value {
        Value::from(records.iter().map(|r| f(r).clone()).collect::<Vec<_>>())
    };
    let numbers = |f: fn(&EventRecord) -> i64| -> Value {
        Value::from(records.iter().map(|r| f(r)).collect::<Vec<_>>())
    };
    // An unclassified event stores 0 in every class: its tokens are the
    // rollups' `total_tokens` minus the classes' sum.
    let class = |f: fn(&EventRecord) -> Option<i64>| -> Value {
        Value::from(
            records
                .iter()
                .map(|r| f(r).unwrap_or(0))
                .collect::<Vec<_>>(),
        )
    };
    let values = vec![
        strings(|r| &r.tenant),
        strings(|r| &r.id),
        strings(|r| &r.feature),
        numbers(|r| r.tokens),
        numbers(|r| r.occurred_ms),
        numbers(|r| r.received_ms),
        new_tenants.monthly_quota.into(),
        Value::from(new_tenants.alert_thresholds.clone()),
        class(|r| r.input_tokens),
        class(|r| r.output_tokens),
        class(|r| r.cache_read_tokens),
        class(|r| r.cache_write_tokens),
        Value::from(tenants),
    ];
    count_of(db, &WRITE_BATCH, values, "inserted").await
}

/// The voids' statement; how many took effect.
async fn write_voids<C: ConnectionTrait>(db: &C, voids: &[&EventRecord]) -> Result<u64, DbErr> {
    let values = vec![
        Value::from(voids.iter().map(|r| r.tenant.clone()).collect::<Vec<_>>()),
        Value::from(voids.iter().map(|r| r.id.clone()).collect::<Vec<_>>()),
        Value::from(voids.iter().map(|r| r.received_ms).collect::<Vec<_>>()),
    ];
    count_of(db, &VOID_BATCH, values, "voided").await
}

/// Runs a statement whose one row holds a count in `column`.
async fn count_of<C: ConnectionTrait>(
    db: &C,
    sql: &str,
    values: Vec<Value>,
    column: &str,
) -> Result<u64, DbErr> {
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
    let row = db.query_one_raw(statement).await?.ok_or_else(|| {
        DbErr::RecordNotFound(format!("the batch statement returned no {column}"))
    })?;
    let count: i64 = row.try_get("", column)?;
    Ok(count as u64)
}

/// The events of a batch in ledger key order (`(tenant, id)`, bytewise as
/// the key's `COLLATE "C"`), each key once: the batch's earliest event with
/// that key stays (the sort is stable), as "first committed wins" asks.
/// Ordered inserts touch the key's index pages in order, and concurrent
/// replicas take the keys' locks in the same order.
fn ledger_order<'r>(records: &[&'r EventRecord]) -> Vec<&'r EventRecord> {
    let mut ordered = records.to_vec();
    ordered.sort_by(|a, b| (&a.tenant, &a.id).cmp(&(&b.tenant, &b.id)));
    ordered.dedup_by(|later, earlier| later.tenant == earlier.tenant && later.id == earlier.id);
    ordered
}

/// The distinct tenants of a batch, in id order: whom its alerts are
/// evaluated for, whether or not this delivery counted anything new.
pub fn tenants_of<'r>(records: impl IntoIterator<Item = &'r EventRecord>) -> Vec<String> {
    let mut tenants: Vec<String> = records.into_iter().map(|r| r.tenant.clone()).collect();
    tenants.sort_unstable();
    tenants.dedup();
    tenants
}

/// Whether PostgreSQL refused the data itself (a value out of range, a
/// constraint or a trigger saying no), which trying again cannot change:
/// such an event is dead-lettered. Everything else is the database's state,
/// and passes: a lost or refused connection, a read-only server (a replica
/// not yet promoted), an administrator's shutdown, a statement or lock
/// timeout, a serialization failure or deadlock, exhausted resources, a
/// missing table. Those are retried until they clear, and never cost an
/// event. By SQLSTATE class: `22` data exception, `23` integrity
/// constraint violation, `P0` raised by PL/pgSQL.
pub fn refused(err: &DbErr) -> bool {
    let (DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err))) = err
    else {
        return false;
    };
    let Some(code) = err.as_database_error().and_then(|e| e.code()) else {
        return false;
    };
    ["22", "23", "P0"]
        .iter()
        .any(|class| code.starts_with(class))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(tenant: &str, id: &str, tokens: i64) -> EventRecord {
        EventRecord::new(id.into(), tenant.into(), "gpt-4o".into(), tokens, 0, 0)
    }

    #[test]
    fn a_batch_goes_to_the_ledger_in_byte_order_with_each_key_once_and_its_earliest_event_kept() {
        let batch = [
            event("b", "2", 1),
            event("a", "9", 2),
            event("b", "2", 3),
            event("B", "1", 4),
            event("a", "10", 5),
        ];
        let refs: Vec<&EventRecord> = batch.iter().collect();
        let ordered: Vec<(&str, &str, i64)> = ledger_order(&refs)
            .iter()
            .map(|r| (r.tenant.as_str(), r.id.as_str(), r.tokens))
            .collect();
        assert_eq!(
            ordered,
            [("B", "1", 4), ("a", "10", 5), ("a", "9", 2), ("b", "2", 1)]
        );
    }
}
