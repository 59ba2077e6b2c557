//! Limits that hold under concurrency: reservations before a model call,
//! per-minute token and request limits, and answers that name the limit.
//!
//! # What a decision counts
//!
//! A tenant's decision (a reservation, a check) adds, in one atomic step:
//!
//! - **counted** usage: the *base*, the tenant's period usage (tokens and
//!   cost) as PostgreSQL showed it in one snapshot, with the settings
//!   read in that snapshot (quota, budget, per-minute limits, period);
//! - **in flight**: every event the api accepted that the base does not
//!   hold, each by id with its tokens and cost (`F`);
//! - **reserved**: every live reservation (`R`);
//! - and the request itself.
//!
//! The sum must stay within the quota, and its cost within the budget. All
//! of it lives in Valkey under keys of one hash slot per tenant
//! ([`keys`]), and one Lua script (`limits.lua`, [`script`]) reads and
//! changes it: every decision is one atomic step on the node that owns
//! the tenant's slot, whichever api replica asks and however the stream
//! is sharded, on one node and on a cluster alike.
//!
//! # From accepted to counted, exactly once
//!
//! An event is registered in `F` *before* it is appended to the stream
//! (by the same script step that settles its reservation, if it names
//! one), so it is held from before the pipeline can see it. It leaves `F`
//! only in a step that also puts it in the base, and only when PostgreSQL
//! showed its ledger row:
//!
//! - A **refresh** (`baseline`) reads the generation `gen`, then in one
//!   `REPEATABLE READ` snapshot reads the tenant's usage, then lists `F`,
//!   then asks the same snapshot which listed ids the ledger holds. It
//!   applies, atomically and only if `gen` is unchanged: base := that
//!   usage, and the ids found leave `F`. An id listed after the snapshot
//!   and found in it is in the usage read; one not found is not (its
//!   row, if any, came later), so it stays in `F`. An id registered after
//!   the listing was appended after it, so not counted in the snapshot.
//! - A **sweep** lists `F` (and `gen`, atomically), asks PostgreSQL which
//!   ids the ledger holds, and applies, only if `gen` is unchanged: the
//!   ids found leave `F` and join the base (when their event time is in
//!   the base's period). The base did not hold them: had their row been
//!   in the base's snapshot, the refresh that made it would have taken
//!   them out of `F`.
//!
//! `gen` grows with every apply, and each apply checks the `gen` it read
//! *before* its snapshot: of two overlapping refreshes or sweeps only the
//! first to apply does, so the bases applied come from ever later
//! snapshots, and no apply ever replaces a base with an older one (which
//! would lose what a sweep moved meanwhile). Removing an id from `F` is
//! idempotent and keyed by the event's id, so a redelivered event, a
//! duplicate in the ledger, or two replicas sweeping the same event
//! change nothing twice: the ledger's row is the only truth about
//! "counted". The pipeline is not involved at all: its COMMIT, crash or
//! redelivery cannot race a hand-off it does not make.
//!
//! What remains inexact leans one way, towards holding room: an id a
//! client sends again after it was counted is held again until a refresh
//! finds it in the ledger (a sweep moves it into the base, where the next
//! refresh replaces it); a void lowers usage only from the next refresh
//! on; in-flight events are priced at the prices in force when accepted.
//!
//! An event registered but never appended (the api killed between the two
//! steps, or the append failing) is a *phantom*. Once the pipeline has
//! counted everything appended up to 60 s after its registration (the
//! stream's watermark, [`crate::lag::Lag::counted_through_ms`], sampled
//! before the snapshot) and the ledger still lacks it, it was never
//! appended, and a refresh or sweep drops it. The 60 s cover the time
//! between registration and append (the api waits at most 5 s for
//! Valkey) and clock differences between Valkey nodes.
//!
//! # Reservations
//!
//! A reservation is granted only if the sum above, with it, is within
//! every limit; it then holds its tokens and its estimated cost ([`cost`])
//! until an event settles it, it is released, or it expires. Settling is
//! one script step: the reservation stops holding and the event's own
//! tokens start, so they are never both held nor neither. Settle, release
//! and expiry of one reservation are each a step of the same script, so
//! whichever runs first ends it, and the others find it ended: an expiry
//! that wins makes the late event count as an event whose reservation
//! expired (accepted and counted, like any event: events are money). A
//! reservation lives in Valkey, not in the api that granted it: if that
//! api dies, another settles or releases it, or it expires.
//!
//! # The bound
//!
//! Every grant keeps counted + in flight + reserved within the limits, at
//! that moment. After it, usage grows beyond what was granted only by an
//! event's excess over its own reservation, or by an event that names none
//! (or an unknown or expired one): those are accepted whatever the limits
//! say. So usage ends above the quota by at most the sum of those.
//!
//! # Per-minute limits
//!
//! A sliding window of 60 one-second buckets (`W`) holds each request's
//! tokens: a reservation at its size when granted (replaced by its
//! event's tokens when settled, removed when released, kept at its size
//! when it expires: the call may well have happened), and an event sent
//! without a reservation. `tokensPerMinute` and `requestsPerMinute` bound
//! the window's totals; a reservation must fit both.
//!
//! # When a dependency is down
//!
//! Valkey down: nothing can be decided, `503` with `Retry-After`.
//! PostgreSQL down: refreshes and sweeps fail, and decisions go on from
//! the last base (its `asOf` says how old) plus what Valkey knows, which
//! stays exact: in-flight events simply stay in flight. Only a tenant with
//! no base for the running period (never decided since Valkey's data was
//! lost or its keys expired, or a period that has just ended) is unknown:
//! `FLAGMETER_LIMITS_WHEN_UNKNOWN` says whether a reservation is then
//! granted (`allow`, the default: per-minute limits still apply) or
//! refused (`refuse`: `503`). A check answers `503` then.

pub mod answer;
mod baseline;
pub mod cost;
pub mod keys;
pub mod script;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use domain::validate::TokenClasses;
use stream::EventRecord;
use tokio_util::sync::CancellationToken;

pub use answer::{Explained, LimitKind, LimitState, Quantity, explain};
pub use script::{Figures, Status};

use crate::{error::ApiError, state::AppState, ttl_cache::TtlCache};
use keys::TenantKeys;
use script::Registration;

/// What a reservation or a decision does when the tenant's counted usage
/// is not known (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WhenUnknown {
    /// Grant, as far as the per-minute limits allow.
    Allow,
    /// Refuse with `503` and `Retry-After`.
    Refuse,
}

/// The shortest time between two refreshes of one tenant by one replica.
const MIN_REFRESH: Duration = Duration::from_millis(50);
/// How long a decision waits for a refresh it cannot do without.
const REFRESH_WAIT: Duration = Duration::from_millis(1_000);
/// How long a replica stops waiting for refreshes after one failed.
const FAILED_REFRESH_HOLD: Duration = Duration::from_secs(1);
/// How often events registered here are swept.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// Tenants per sweep statement.
const SWEEP_TENANTS: usize = 200;
/// How often the live reserved tokens are sampled for the gauge.
const GAUGE_INTERVAL: Duration = Duration::from_secs(10);

/// The tenants' limits, shared by every request of a replica.
#[derive(Clone)]
pub struct Limits {
    /// `{stream}:limits`: where the tenants' keys live.
    prefix: Arc<str>,
    when_unknown: WhenUnknown,
    /// One refresh per tenant at a time, and at most one per lifetime.
    refreshes: TtlCache<String, ()>,
    /// When a refresh last failed, per tenant: decisions do not wait for
    /// another one for a while (PostgreSQL is likely down).
    failed: Arc<Mutex<HashMap<String, Instant>>>,
    prices: cost::Prices,
    /// Tenants with events registered here that may still be in flight.
    pending: Arc<Mutex<HashSet<String>>>,
    /// Tenants decided on here, for the gauge of reserved tokens.
    seen: Arc<Mutex<HashSet<String>>>,
}

/// A reservation as asked for, its rules checked.
#[derive(Debug, Clone)]
pub struct Ask {
    pub tenant: String,
    /// The reservation's id within the tenant (the client's `id`, or one
    /// generated).
    pub key: String,
    pub tokens: i64,
    pub feature: Option<String>,
    pub classes: TokenClasses,
    pub ttl: Duration,
}

impl Limits {
    /// Limits under `{stream}:limits`, refreshed from PostgreSQL at most
    /// every `refresh_after` per tenant.
    pub fn new(stream: &str, when_unknown: WhenUnknown, refresh_after: Duration) -> Self {
        Self {
            prefix: format!("{stream}:limits").into(),
            when_unknown,
            refreshes: TtlCache::new(refresh_after.max(MIN_REFRESH), |_| true),
            failed: Arc::default(),
            prices: cost::Prices::default(),
            pending: Arc::default(),
            seen: Arc::default(),
        }
    }

    fn keys(&self, tenant: &str) -> TenantKeys {
        TenantKeys::new(&self.prefix, tenant)
    }

    /// Decides a reservation; the figures say how.
    pub async fn reserve(&self, state: &AppState, ask: &Ask) -> Result<Figures, ApiError> {
        let book = self.prices.book(&state.db).await;
        let cost = cost::of_reservation(
            &book,
            ask.feature.as_deref(),
            ask.tokens,
            &ask.classes,
            Utc::now(),
        );
        let keys = self.keys(&ask.tenant);
        let ttl_ms = i64::try_from(ask.ttl.as_millis()).unwrap_or(i64::MAX);
        let figures = self
            .decide(state, &ask.tenant, |allow_unknown| {
                let mut conn = state.valkey.clone();
                let keys = &keys;
                async move {
                    script::reserve(
                        &mut conn,
                        keys,
                        &ask.key,
                        ask.tokens,
                        cost,
                        ttl_ms,
                        allow_unknown,
                    )
                    .await
                }
            })
            .await?;
        record_decision(&figures);
        Ok(figures)
    }

    /// Would a call of `tokens` fit now? A `503` if counted usage is not
    /// known.
    pub async fn check(
        &self,
        state: &AppState,
        tenant: &str,
        tokens: i64,
    ) -> Result<Figures, ApiError> {
        let keys = self.keys(tenant);
        let figures = self
            .decide(state, tenant, |_| {
                let mut conn = state.valkey.clone();
                let keys = &keys;
                async move { script::check(&mut conn, keys, tokens).await }
            })
            .await?;
        record_ended(&figures);
        Ok(figures)
    }

    /// Runs `decide` (given whether to decide without a base) once;
    /// without a base, refreshes and runs it again, then, if the base is
    /// still unknown, decides as `FLAGMETER_LIMITS_WHEN_UNKNOWN` says (a
    /// check answers `503`). A base older than the refresh time is read
    /// again in the background.
    async fn decide<F, Fut>(
        &self,
        state: &AppState,
        tenant: &str,
        decide: F,
    ) -> Result<Figures, ApiError>
    where
        F: Fn(bool) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<Figures>>,
    {
        self.remember(&self.seen, tenant);
        let first = decide(false).await.map_err(unavailable)?;
        if first.status != Status::Unknown {
            self.refresh_if_old(state, tenant, &first);
            return Ok(first);
        }
        if self.refresh_now(state, tenant).await {
            let again = decide(false).await.map_err(unavailable)?;
            if again.status != Status::Unknown {
                return Ok(again);
            }
        }
        let allow = self.when_unknown == WhenUnknown::Allow;
        let last = decide(allow).await.map_err(unavailable)?;
        if last.status == Status::Unknown {
            return Err(ApiError::unavailable(
                "the tenant's counted usage is unknown: PostgreSQL is unavailable",
            ));
        }
        Ok(last)
    }

    /// Refreshes in the background if the base is older than the refresh
    /// time (at most one refresh per tenant at a time here, and none for a
    /// second after one failed: under load, sweeps can keep a refresh from
    /// applying, and a retry per decision would multiply Valkey's work).
    fn refresh_if_old(&self, state: &AppState, tenant: &str, figures: &Figures) {
        let age_ms = figures.now_ms - figures.base_read_ms.unwrap_or(0);
        if u128::try_from(age_ms).unwrap_or(0) < self.refreshes.ttl().as_millis()
            || self.recently_failed(tenant)
        {
            return;
        }
        let (limits, state, tenant) = (self.clone(), state.clone(), tenant.to_owned());
        tokio::spawn(async move {
            limits.refresh(&state, &tenant).await;
        });
    }

    /// Refreshes now, waiting a while at most; whether it succeeded. After
    /// a failure, decisions stop waiting for a second.
    async fn refresh_now(&self, state: &AppState, tenant: &str) -> bool {
        if self.recently_failed(tenant) {
            return false;
        }
        let done = tokio::time::timeout(REFRESH_WAIT, self.refresh(state, tenant))
            .await
            .unwrap_or(false);
        if !done {
            self.lock(&self.failed)
                .insert(tenant.to_owned(), Instant::now());
        }
        done
    }

    /// Whether a refresh of `tenant` failed less than a second ago.
    fn recently_failed(&self, tenant: &str) -> bool {
        self.lock(&self.failed)
            .get(tenant)
            .is_some_and(|at| at.elapsed() < FAILED_REFRESH_HOLD)
    }

    /// One refresh of `tenant`, shared by concurrent callers; whether it
    /// (or a newer one) was applied.
    async fn refresh(&self, state: &AppState, tenant: &str) -> bool {
        let keys = self.keys(tenant);
        let refreshed = self
            .refreshes
            .get(&tenant.to_owned(), || {
                baseline::refresh(state, &keys, tenant)
            })
            .await;
        match refreshed {
            Ok(()) => {
                self.lock(&self.failed).remove(tenant);
                true
            }
            Err(err) => {
                tracing::warn!(%err, tenant, "cannot refresh the tenant's counted usage");
                self.lock(&self.failed)
                    .insert(tenant.to_owned(), Instant::now());
                false
            }
        }
    }

    /// Registers accepted events before they are appended, settling the
    /// reservations they name (`reservations[i]` is event `i`'s, as sent):
    /// one script step per tenant, all in one round trip. Then the events
    /// are in flight until the ledger shows them counted.
    pub async fn register(
        &self,
        state: &AppState,
        records: &[EventRecord],
        reservations: &[Option<String>],
    ) -> Result<(), ApiError> {
        let book = self.prices.book(&state.db).await;
        let mut by_tenant: Vec<(&str, Vec<Registration<'_>>)> = Vec::new();
        let events = records
            .iter()
            .zip(reservations)
            .filter(|(record, _)| !record.void);
        for (record, reservation) in events {
            let occurred = DateTime::from_timestamp_millis(record.occurred_ms).unwrap_or_default();
            let registration = Registration {
                id: &record.id,
                tokens: record.tokens,
                cost_micros: cost::of_event(
                    &book,
                    &record.feature,
                    record.tokens,
                    &record.classes(),
                    occurred,
                ),
                occurred_ms: record.occurred_ms,
                // Another tenant's reservation is not this tenant's: unknown.
                reservation: reservation
                    .as_deref()
                    .and_then(|r| reservation_key(r, &record.tenant)),
            };
            match by_tenant.iter_mut().find(|(t, _)| *t == record.tenant) {
                Some((_, events)) => events.push(registration),
                None => by_tenant.push((&record.tenant, vec![registration])),
            }
        }
        let calls: Vec<(TenantKeys, Vec<Registration<'_>>)> = by_tenant
            .into_iter()
            .map(|(tenant, events)| (self.keys(tenant), events))
            .collect();
        let mut conn = state.valkey.clone();
        let outcomes = script::register(&mut conn, &calls)
            .await
            .map_err(unavailable)?;
        for (settled, expired) in outcomes {
            record_ended_counts(settled, 0, expired);
        }
        for record in records {
            self.remember(&self.pending, &record.tenant);
        }
        Ok(())
    }

    /// Releases a reservation (`tenant`'s `key`); idempotent.
    pub async fn release(&self, state: &AppState, tenant: &str, key: &str) -> Result<(), ApiError> {
        let mut conn = state.valkey.clone();
        let (released, expired) = script::release(&mut conn, &self.keys(tenant), key)
            .await
            .map_err(unavailable)?;
        record_ended_counts(0, u64::from(released), expired);
        Ok(())
    }

    /// Live reserved tokens of each tenant (`None` where Valkey could not
    /// say), in one round trip.
    pub async fn reserved_tokens(&self, state: &AppState, tenants: &[String]) -> Vec<Option<i64>> {
        let keys: Vec<TenantKeys> = tenants.iter().map(|t| self.keys(t)).collect();
        let mut conn = state.valkey.clone();
        match script::peek(&mut conn, &keys).await {
            Ok(figures) => figures.iter().map(|f| Some(f.reserved_tokens)).collect(),
            Err(err) => {
                tracing::debug!(%err, "cannot read the reserved tokens");
                vec![None; tenants.len()]
            }
        }
    }

    /// Sweeps the events registered here, and samples the reserved tokens
    /// gauge, until `shutdown`.
    pub async fn run(self, state: AppState, shutdown: CancellationToken) {
        let mut sweeps = tokio::time::interval(SWEEP_INTERVAL);
        let mut gauge = tokio::time::interval(GAUGE_INTERVAL);
        for ticks in [&mut sweeps, &mut gauge] {
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = sweeps.tick() => self.sweep(&state).await,
                _ = gauge.tick() => self.sample_gauge(&state).await,
            }
        }
    }

    /// One sweep of the tenants with events registered here; those that
    /// still have some in flight are swept again next time.
    async fn sweep(&self, state: &AppState) {
        let tenants: Vec<String> = self.lock(&self.pending).drain().collect();
        for chunk in tenants.chunks(SWEEP_TENANTS) {
            let keys: Vec<TenantKeys> = chunk.iter().map(|t| self.keys(t)).collect();
            let again = match baseline::sweep(state, chunk, &keys).await {
                Ok(again) => again,
                Err(err) => {
                    tracing::debug!(%err, "cannot sweep the events in flight; trying again");
                    chunk.to_vec()
                }
            };
            self.lock(&self.pending).extend(again);
        }
    }

    /// Sets `flagmeter_reserved_tokens`: the live reservations of every
    /// tenant this replica has decided on or that has a row.
    async fn sample_gauge(&self, state: &AppState) {
        use sea_orm::{EntityTrait, QuerySelect};
        let mut tenants: HashSet<String> = self.lock(&self.seen).clone();
        match entity::tenants::Entity::find()
            .select_only()
            .column(entity::tenants::Column::Id)
            .into_tuple::<String>()
            .all(&state.db)
            .await
        {
            Ok(rows) => tenants.extend(rows),
            Err(err) => {
                tracing::debug!(%err, "cannot list the tenants for the reserved tokens gauge")
            }
        }
        let tenants: Vec<String> = tenants.into_iter().collect();
        let mut total = 0_i64;
        for chunk in tenants.chunks(SWEEP_TENANTS) {
            let reserved = self.reserved_tokens(state, chunk).await;
            if reserved.iter().any(Option::is_none) {
                return;
            }
            total += reserved.into_iter().flatten().sum::<i64>();
        }
        metrics::gauge!("flagmeter_reserved_tokens").set(total as f64);
    }

    fn remember(&self, set: &Mutex<HashSet<String>>, tenant: &str) {
        let mut set = self.lock(set);
        if !set.contains(tenant) {
            set.insert(tenant.to_owned());
        }
    }

    fn lock<'a, T>(&self, mutex: &'a Mutex<T>) -> std::sync::MutexGuard<'a, T> {
        mutex.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The reservation id clients see: `<tenant>:<key>` (tenant slugs hold no
/// `:`, so the first one separates them).
pub fn reservation_id(tenant: &str, key: &str) -> String {
    format!("{tenant}:{key}")
}

/// The rule of an event's `reservationId`: 1–200 printable ASCII
/// characters (any such id is accepted; one that names no live
/// reservation of the event's tenant settles nothing).
pub fn check_reservation_id(id: &str) -> Result<(), domain::validate::Invalid> {
    if (1..=200).contains(&id.len()) && id.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        Ok(())
    } else {
        Err(domain::validate::Invalid::new(
            "reservationId",
            "must be 1-200 printable ASCII characters",
        ))
    }
}

/// The key of reservation `id` if it is `tenant`'s.
pub fn reservation_key<'a>(id: &'a str, tenant: &str) -> Option<&'a str> {
    id.split_once(':')
        .filter(|(of, key)| *of == tenant && !key.is_empty())
        .map(|(_, key)| key)
}

/// A Valkey failure: nothing could be decided or recorded.
fn unavailable(err: redis::RedisError) -> ApiError {
    tracing::warn!(%err, "cannot reach Valkey for the limits");
    ApiError::unavailable("limits unavailable: Valkey unreachable")
}

/// Counts a reservation decision, and what ended in it.
fn record_decision(figures: &Figures) {
    match figures.status {
        Status::Granted => metrics::counter!("flagmeter_reservations_granted_total").increment(1),
        Status::Refused => {
            let kind = explain(figures)
                .blocked_by
                .map_or("unknown", LimitKind::name);
            metrics::counter!("flagmeter_reservations_refused_total", "kind" => kind).increment(1);
        }
        Status::Replayed | Status::Allowed | Status::Unknown => {}
    }
    record_ended(figures);
}

fn record_ended(figures: &Figures) {
    record_ended_counts(0, 0, figures.expired);
}

fn record_ended_counts(settled: u64, released: u64, expired: u64) {
    for (how, count) in [
        ("settled", settled),
        ("released", released),
        ("expired", expired),
    ] {
        if count > 0 {
            metrics::counter!("flagmeter_reservations_ended_total", "how" => how).increment(count);
        }
    }
}

/// Declares the metrics of reservations for `/metrics`.
pub fn describe() {
    metrics::describe_counter!(
        "flagmeter_reservations_granted_total",
        "Reservations granted (POST /api/reservations answered 201, not counting replays)."
    );
    metrics::describe_counter!(
        "flagmeter_reservations_refused_total",
        "Reservations refused with 429, by the limit that blocked (kind)."
    );
    metrics::describe_counter!(
        "flagmeter_reservations_ended_total",
        "Reservations that stopped holding room, by how: settled by an event, released, expired."
    );
    metrics::describe_gauge!(
        "flagmeter_reserved_tokens",
        "Tokens held by live reservations, all tenants, sampled every 10 s (each api replica \
         reports the same total)."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_id_names_its_tenant() {
        let id = reservation_id("acme-corp", "call:7 f");
        assert_eq!(id, "acme-corp:call:7 f");
        assert_eq!(reservation_key(&id, "acme-corp"), Some("call:7 f"));
        assert_eq!(reservation_key(&id, "acme"), None);
        assert_eq!(reservation_key("acme-corp:", "acme-corp"), None);
        assert_eq!(reservation_key("acme-corp", "acme-corp"), None);
    }
}
