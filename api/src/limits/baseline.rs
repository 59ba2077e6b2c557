//! Refreshes and sweeps: how counted usage reaches a tenant's limits, and
//! how accepted events leave "in flight" once PostgreSQL shows them
//! counted (the argument is in the [module docs](super)).
//!
//! - [`refresh`]: `gen`, then one `REPEATABLE READ` snapshot for the
//!   usage and for which listed ids the ledger holds, with `F` listed in
//!   between; applied if `gen` is unchanged.
//! - [`sweep`]: `F` and `gen` listed together, then one statement asks the
//!   ledger about every listed id of every tenant swept; applied per
//!   tenant if its `gen` is unchanged.
//!
//! Both drop the phantoms: listed, not counted, and registered well
//! before the stream's watermark.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use domain::period::{BillingPeriod, Tz};
use sea_orm::{AccessMode, DbErr, IsolationLevel, TransactionTrait};
use store::usage::PeriodUsage;

use super::{
    keys::TenantKeys,
    script::{self, Apply, Applying, Base, Listing},
};
use crate::state::AppState;

/// Most in-flight events listed per tenant at once (more are left for the
/// next sweep, and held in flight meanwhile).
const MOST_LISTED: usize = 10_000;
/// How long after its registration an event is surely appended, if it
/// ever was (the api's Valkey timeout is 5 s), clock differences between
/// Valkey nodes included.
const PHANTOM_GRACE_MS: i64 = 60_000;
/// Refresh attempts when another apply slips in between.
const REFRESH_ATTEMPTS: usize = 3;

/// Why a refresh or sweep did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("Valkey: {0}")]
    Valkey(#[from] redis::RedisError),
    #[error("PostgreSQL: {0}")]
    Database(#[from] DbErr),
    #[error("other refreshes or sweeps kept slipping in")]
    Superseded,
}

/// Reads `tenant`'s counted usage and settings into its base, taking the
/// events the same snapshot shows counted out of flight.
pub async fn refresh(state: &AppState, keys: &TenantKeys, tenant: &str) -> Result<(), Failure> {
    for _ in 0..REFRESH_ATTEMPTS {
        if refresh_once(state, keys, tenant).await? {
            return Ok(());
        }
    }
    Err(Failure::Superseded)
}

/// One attempt; whether it was applied.
async fn refresh_once(state: &AppState, keys: &TenantKeys, tenant: &str) -> Result<bool, Failure> {
    // Before the snapshot: whatever the watermark says counted is in it.
    let cutoff = state.lag.counted_through_ms() - PHANTOM_GRACE_MS;
    let mut conn = state.valkey.clone();
    let generation = script::generation(&mut conn, keys).await?;
    let txn = state
        .db
        .begin_with_config(
            Some(IsolationLevel::RepeatableRead),
            Some(AccessMode::ReadOnly),
        )
        .await?;
    let now = Utc::now();
    // The first statement takes the snapshot.
    let usage = store::usage::tenant_usage(&txn, tenant, now).await?;
    let listing = script::list(&mut conn, &[keys], MOST_LISTED)
        .await?
        .pop()
        .unwrap_or_default();
    if listing.generation != generation {
        txn.rollback().await?;
        return Ok(false);
    }
    let asked: Vec<(String, String)> = listing
        .events
        .iter()
        .map(|(id, _)| (tenant.to_owned(), id.clone()))
        .collect();
    let counted: HashSet<String> = store::inflight::counted(&txn, &asked)
        .await?
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    txn.commit().await?;
    let (counted, phantoms) = sort_out(&listing, &counted, cutoff);
    let base = base_of(usage, now, state.default_quota);
    let applied = script::apply(
        &mut conn,
        &[Applying {
            keys,
            generation,
            apply: Apply::Base(base),
            cutoff_ms: cutoff,
            counted: &counted,
            phantoms: &phantoms,
        }],
    )
    .await?;
    Ok(applied.first().copied().unwrap_or(false))
}

/// Sweeps `tenants` (whose keys are `keys`): their counted events join
/// their bases. Returns the tenants to sweep again (events still in
/// flight, a listing cut short, or an apply that lost its race).
pub async fn sweep(
    state: &AppState,
    tenants: &[String],
    keys: &[TenantKeys],
) -> Result<Vec<String>, Failure> {
    let cutoff = state.lag.counted_through_ms() - PHANTOM_GRACE_MS;
    let mut conn = state.valkey.clone();
    let listings = script::list(&mut conn, &keys.iter().collect::<Vec<_>>(), MOST_LISTED).await?;
    let asked: Vec<(String, String)> = tenants
        .iter()
        .zip(&listings)
        .flat_map(|(tenant, listing)| {
            listing
                .events
                .iter()
                .map(move |(id, _)| (tenant.clone(), id.clone()))
        })
        .collect();
    let mut counted: HashMap<String, HashSet<String>> = HashMap::new();
    for (tenant, id) in store::inflight::counted(&state.db, &asked).await? {
        counted.entry(tenant).or_default().insert(id);
    }
    let none = HashSet::new();
    let mut sorted = Vec::new();
    let mut again = Vec::new();
    for ((tenant, keys), listing) in tenants.iter().zip(keys).zip(&listings) {
        let (taken, phantoms) = sort_out(listing, counted.get(tenant).unwrap_or(&none), cutoff);
        if listing.partial || taken.len() + phantoms.len() < listing.events.len() {
            again.push(tenant.clone());
        }
        if !taken.is_empty() || !phantoms.is_empty() {
            sorted.push((tenant, keys, listing.generation, taken, phantoms));
        }
    }
    let applies: Vec<Applying> = sorted
        .iter()
        .map(|(_, keys, generation, taken, phantoms)| Applying {
            keys,
            generation: *generation,
            apply: Apply::Sweep,
            cutoff_ms: cutoff,
            counted: taken,
            phantoms,
        })
        .collect();
    let applied = script::apply(&mut conn, &applies).await?;
    for ((tenant, ..), applied) in sorted.iter().zip(applied) {
        if !applied && !again.contains(tenant) {
            again.push((*tenant).clone());
        }
    }
    Ok(again)
}

/// The listed events the ledger holds, and the phantoms: those it does
/// not hold, registered before `cutoff_ms`.
fn sort_out(
    listing: &Listing,
    counted: &HashSet<String>,
    cutoff_ms: i64,
) -> (Vec<String>, Vec<String>) {
    let mut taken = Vec::new();
    let mut phantoms = Vec::new();
    for (id, registered_ms) in &listing.events {
        if counted.contains(id) {
            taken.push(id.clone());
        } else if *registered_ms < cutoff_ms {
            phantoms.push(id.clone());
        }
    }
    (taken, phantoms)
}

/// The base a snapshot gives: the tenant's period usage and settings, or
/// for a tenant never seen those of a new one (the default quota, no
/// usage, a period from the 1st, UTC), read at `now`.
fn base_of(usage: Option<PeriodUsage>, now: DateTime<Utc>, default_quota: i64) -> Base {
    match usage {
        Some(usage) => Base {
            tokens: usage.total_tokens(),
            cost_micros: usage.cost().micros_rounded_up(),
            read_ms: now.timestamp_millis(),
            period_start_ms: usage.period.start.timestamp_millis(),
            period_end_ms: usage.period.end.timestamp_millis(),
            quota: usage.tenant.monthly_quota,
            budget_micros: usage.budget().map(|b| b.micros()),
            tokens_per_minute: usage.tenant.tokens_per_minute,
            requests_per_minute: usage.tenant.requests_per_minute,
        },
        None => {
            let period = BillingPeriod::containing(now, 1, Tz::UTC);
            Base {
                tokens: 0,
                cost_micros: 0,
                read_ms: now.timestamp_millis(),
                period_start_ms: period.start.timestamp_millis(),
                period_end_ms: period.end.timestamp_millis(),
                quota: default_quota,
                budget_micros: None,
                tokens_per_minute: None,
                requests_per_minute: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_events_are_taken_and_old_uncounted_ones_are_phantoms() {
        let listing = Listing {
            generation: 3,
            partial: false,
            events: vec![
                ("counted".into(), 1_000),
                ("young".into(), 9_000),
                ("old".into(), 1_000),
            ],
        };
        let counted = HashSet::from(["counted".to_owned()]);
        let (taken, phantoms) = sort_out(&listing, &counted, 5_000);
        assert_eq!(taken, ["counted"]);
        assert_eq!(phantoms, ["old"]);
    }

    #[test]
    fn a_tenant_never_seen_gets_the_defaults() {
        let now: DateTime<Utc> = "2026-11-15T10:00:00Z".parse().unwrap();
        let base = base_of(None, now, 1_000);
        assert_eq!(base.quota, 1_000);
        assert_eq!(base.tokens, 0);
        assert_eq!(
            base.period_start_ms,
            "2026-11-01T00:00:00Z"
                .parse::<DateTime<Utc>>()
                .unwrap()
                .timestamp_millis()
        );
        assert_eq!(base.budget_micros, None);
    }
}
