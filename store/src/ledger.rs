//! Reading the events ledger back, for the event explorer: a tenant's
//! counted events, newest first, one page at a time.
//!
//! Pages are keyset-paginated on `(occurred_at, id)`: a page starts below
//! the last row of the previous one, which the index
//! `events_tenant_occurred_idx (tenant, occurred_at, id)` finds directly,
//! so the thousandth page costs what the first does (an `OFFSET` would read
//! and drop every row before it). A `feature` filter is applied to the rows
//! of that index range, so a rare feature may read many rows per page.
//! Voided events are listed (marked); tombstones (voids of ids never
//! counted, `tokens` 0) are not events and are not.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, FromQueryResult, Statement, Value};

/// Where a page starts: just below this `(occurred_at, id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub occurred_at: DateTime<Utc>,
    pub id: String,
}

/// What to list.
#[derive(Debug, Clone)]
pub struct EventQuery {
    pub tenant: String,
    /// Event time from (inclusive) ...
    pub from: Option<DateTime<Utc>>,
    /// ... to (exclusive).
    pub to: Option<DateTime<Utc>>,
    pub feature: Option<String>,
    pub limit: u64,
    pub after: Option<After>,
}

/// The page's statement; public so that a test can `EXPLAIN` it. Every
/// bound is a value (no `IS NULL` alternatives), so that a generic plan,
/// too, is one range scan of the index: the first page starts below
/// `(to, '')`, which is below every row before `to`.
pub const LIST_EVENTS: &str = r#"
SELECT id, feature, tokens, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
       occurred_at, received_at, voided_at IS NOT NULL AS voided
FROM events
WHERE tenant = $1 AND occurred_at >= $2 AND (occurred_at, id) < ($3, $4)
  AND tokens > 0 AND ($5::text IS NULL OR feature = $5)
ORDER BY occurred_at DESC, id DESC
LIMIT $6
"#;

/// Event times are 1970–9999 (the stream record's rule): these bound a
/// range left open.
const EARLIEST: DateTime<Utc> = DateTime::UNIX_EPOCH;

fn latest() -> DateTime<Utc> {
    // 9999-12-31T23:59:59.999Z is a valid instant.
    DateTime::from_timestamp_millis(253_402_300_799_999).expect("year 9999 is representable")
}

impl EventQuery {
    /// The bind values of [`LIST_EVENTS`].
    pub fn values(&self) -> Vec<Value> {
        let to = self.to.unwrap_or_else(latest);
        let (below_at, below_id) = match &self.after {
            Some(after) if after.occurred_at < to => (after.occurred_at, after.id.clone()),
            _ => (to, String::new()),
        };
        vec![
            self.tenant.clone().into(),
            self.from.unwrap_or(EARLIEST).into(),
            below_at.into(),
            below_id.into(),
            self.feature.clone().into(),
            (self.limit.min(i64::MAX as u64) as i64).into(),
        ]
    }
}

/// One page of events, newest first, as rows of `T`, which reads the
/// columns of [`LIST_EVENTS`] (`id`, `feature`, `tokens`, the four classes,
/// `occurred_at`, `received_at` and `voided`).
pub async fn list_events<T: FromQueryResult, C: ConnectionTrait>(
    db: &C,
    query: &EventQuery,
) -> Result<Vec<T>, DbErr> {
    T::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        LIST_EVENTS,
        query.values(),
    ))
    .all(db)
    .await
}
