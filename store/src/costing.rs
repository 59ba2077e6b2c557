//! Priced usage: counted tokens by class, each part priced by the version
//! in force at its event time, computed when usage is read.
//!
//! Counts are read at the coarsest level that is exact. A day of a feature
//! (a daily rollup) has one price unless a version takes effect during that
//! day; such a day is read again as minutes (minute rollups), and a minute
//! during which a version takes effect (an `effectiveFrom` not on a whole
//! minute) as the ledger's events of that minute. So a period costs about
//! one row per feature and day, as its token total did, plus a few rows
//! around each price change; nothing is ever priced at the wrong version.
//! (The ledger keeps at least 35 days, longer than any period; a time
//! series reaching further back prices a minute split by a price change
//! only as far as its events are still kept.)
//!
//! A span read from days need not lie on UTC midnights: a billing period in
//! a time zone other than UTC starts and ends at local midnight. Its whole
//! UTC days are read from the daily rollups and the partial UTC days at
//! either end from the minute rollups (as `period_feature_totals` sums
//! tokens), so class counts and cost cover exactly the period's tokens. A
//! voided event has left the rollups (classes included); where events are
//! read from the ledger, voided ones and tombstones are skipped.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};

use crate::prices;

use domain::{
    money::Amount,
    pricing::{Counts, PriceBook},
};

/// Which counts to read: a tenant's, of one feature or all (`None`), with
/// event times in `[from, to)` (on whole minutes).
#[derive(Debug, Clone)]
pub struct Scope {
    pub tenant: String,
    pub feature: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The counts of one tenant and feature from `start`, with their cost.
#[derive(Debug, Clone)]
pub struct Priced {
    pub tenant: String,
    pub feature: String,
    pub start: DateTime<Utc>,
    pub counts: Counts,
    /// `None` when no price of the feature was in force at the time.
    pub cost: Option<Amount>,
}

/// Where counts are read from, coarsest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Day,
    Minute,
    Event,
}

impl Level {
    /// The span of a row read at this level (an event is a moment).
    fn width(self) -> Duration {
        match self {
            Self::Day => Duration::days(1),
            Self::Minute => Duration::minutes(1),
            Self::Event => Duration::zero(),
        }
    }

    fn finer(self) -> Option<Self> {
        match self {
            Self::Day => Some(Self::Minute),
            Self::Minute => Some(Self::Event),
            Self::Event => None,
        }
    }

    fn statement(self) -> &'static str {
        match self {
            Self::Day => DAYS,
            Self::Minute => MINUTES,
            Self::Event => EVENTS,
        }
    }
}

/// A statement reading counts per tenant, feature and `start` from the
/// rows `r` of a table, for scopes that come in as one array per column; an
/// empty feature is every feature (a feature name is never empty).
macro_rules! counts_by {
    // A rollup table: its rows carry their counts and when they were updated.
    (rollups = $table:literal, start = $start:literal, within = $within:literal) => {
        counts_by!(
            start = $start,
            updated = "max(r.updated_at)",
            events = "sum(r.event_count)",
            tokens = "total_tokens",
            table = $table,
            within = $within
        )
    };
    (start = $start:literal, updated = $updated:literal, events = $events:literal,
     tokens = $tokens:literal, table = $table:literal, within = $within:literal) => {
        concat!(
            "SELECT r.tenant, r.feature, ",
            $start,
            " AS start, ",
            $updated,
            " AS updated_at, ",
            $events,
            "::bigint AS events, sum(r.",
            $tokens,
            ")::bigint AS tokens, ",
            "sum(r.input_tokens)::bigint AS input_tokens, ",
            "sum(r.output_tokens)::bigint AS output_tokens, ",
            "sum(r.cache_read_tokens)::bigint AS cache_read_tokens, ",
            "sum(r.cache_write_tokens)::bigint AS cache_write_tokens ",
            "FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[]) ",
            "AS k(tenant, feature, t0, t1) ",
            "JOIN ",
            $table,
            " r ON r.tenant = k.tenant AND (k.feature = '' OR r.feature = k.feature) ",
            "AND ",
            $within,
            " GROUP BY 1, 2, 3"
        )
    };
}

const DAYS: &str = counts_by!(
    rollups = "daily_rollups",
    start = "(r.day::timestamp AT TIME ZONE 'UTC')",
    within = "r.day >= (k.t0 AT TIME ZONE 'UTC')::date AND r.day < (k.t1 AT TIME ZONE 'UTC')::date"
);

const MINUTES: &str = counts_by!(
    rollups = "rollups",
    start = "r.minute",
    within = "r.minute >= k.t0 AND r.minute < k.t1"
);

const EVENTS: &str = counts_by!(
    start = "r.occurred_at",
    updated = "NULL::timestamptz",
    events = "count(*)",
    tokens = "tokens",
    table = "events",
    within = "r.occurred_at >= k.t0 AND r.occurred_at < k.t1 AND r.voided_at IS NULL"
);

/// What [`priced`] read.
#[derive(Debug, Clone, Default)]
pub struct PricedCounts {
    pub pieces: Vec<Priced>,
    /// Per tenant, when the newest of its rollup rows read was updated.
    pub last_updated: HashMap<String, DateTime<Utc>>,
}

/// Priced counts of `scopes`, read from `level` and finer where a price
/// changes. Read from days, a scope's partial UTC days at either end are
/// read from minutes.
pub async fn priced<C: ConnectionTrait>(
    db: &C,
    book: &PriceBook,
    scopes: Vec<Scope>,
    level: Level,
) -> Result<PricedCounts, DbErr> {
    let mut out = PricedCounts::default();
    if level == Level::Day {
        let (days, edges) = split_at_utc_days(scopes);
        refine(db, book, days, Level::Day, &mut out).await?;
        refine(db, book, edges, Level::Minute, &mut out).await?;
    } else {
        refine(db, book, scopes, level, &mut out).await?;
    }
    Ok(out)
}

/// The whole UTC days of each scope, and the partial days at its ends.
fn split_at_utc_days(scopes: Vec<Scope>) -> (Vec<Scope>, Vec<Scope>) {
    let midnight = |t: DateTime<Utc>| {
        t.date_naive()
            .and_hms_opt(0, 0, 0)
            .map_or(t, |m| m.and_utc())
    };
    let (mut days, mut edges) = (Vec::new(), Vec::new());
    for scope in scopes {
        let first = midnight(scope.from);
        let full_from = if first == scope.from {
            first
        } else {
            first + Duration::days(1)
        };
        let full_to = midnight(scope.to);
        let part = |from, to| Scope {
            from,
            to,
            ..scope.clone()
        };
        if full_from >= full_to {
            edges.push(scope);
            continue;
        }
        if scope.from < full_from {
            edges.push(part(scope.from, full_from));
        }
        if full_to < scope.to {
            edges.push(part(full_to, scope.to));
        }
        days.push(part(full_from, full_to));
    }
    (days, edges)
}

async fn refine<C: ConnectionTrait>(
    db: &C,
    book: &PriceBook,
    scopes: Vec<Scope>,
    level: Level,
    out: &mut PricedCounts,
) -> Result<(), DbErr> {
    let (mut scopes, mut level) = (scopes, level);
    loop {
        let finer = level.finer();
        let mut split = Vec::new();
        for (priced, updated) in read(db, &scopes, level).await? {
            if let Some(updated) = updated {
                let latest = out
                    .last_updated
                    .entry(priced.tenant.clone())
                    .or_insert(updated);
                *latest = (*latest).max(updated);
            }
            let end = priced.start + level.width();
            if finer.is_some() && book.changes_within(&priced.feature, priced.start, end) {
                split.push(Scope {
                    tenant: priced.tenant,
                    feature: Some(priced.feature),
                    from: priced.start,
                    to: end,
                });
                continue;
            }
            out.pieces.push(Priced {
                cost: book
                    .in_force(&priced.feature, priced.start)
                    .map(|version| version.cost(&priced.counts)),
                ..priced
            });
        }
        match finer {
            Some(finer) if !split.is_empty() => (scopes, level) = (split, finer),
            _ => return Ok(()),
        }
    }
}

async fn read<C: ConnectionTrait>(
    db: &C,
    scopes: &[Scope],
    level: Level,
) -> Result<Vec<(Priced, Option<DateTime<Utc>>)>, DbErr> {
    if scopes.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: fn(&Scope) -> String| -> Value {
        Value::from(scopes.iter().map(f).collect::<Vec<_>>())
    };
    let time = |f: fn(&Scope) -> DateTime<Utc>| -> Value {
        Value::from(scopes.iter().map(f).collect::<Vec<_>>())
    };
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            level.statement(),
            [
                column(|s| s.tenant.clone()),
                column(|s| s.feature.clone().unwrap_or_default()),
                time(|s| s.from),
                time(|s| s.to),
            ],
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                Priced {
                    tenant: row.try_get("", "tenant")?,
                    feature: row.try_get("", "feature")?,
                    start: row.try_get("", "start")?,
                    counts: prices::counts_from_row(row)?,
                    cost: None,
                },
                row.try_get("", "updated_at")?,
            ))
        })
        .collect()
}
