//! Ingest: turning validated client events (and voids) into stream records
//! and appending them to Valkey. This path never touches PostgreSQL: an
//! event is accepted once it is durably in the stream, and counted by the
//! pipeline later.

use chrono::{DateTime, Utc};
use domain::validate::Invalid;
use stream::{AppendError, EventRecord};

use crate::{
    auth::{Caller, Scope},
    error::ApiError,
    state::AppState,
};

/// What a client sends into the stream, an event or a void: the tenant it
/// is for, and its record under the domain rules.
pub trait Submission {
    /// What a 400 calls it (`event`, `void`).
    const KIND: &'static str;

    fn tenant(&self) -> &str;

    /// The reservation the item settles, if it names one (an event may).
    fn reservation(&self) -> Option<&str> {
        None
    }

    /// The stream record, received at `now`, if it obeys every rule.
    fn into_record(self, now: DateTime<Utc>) -> Result<EventRecord, Invalid>;
}

/// Accepts one submission: the caller may ingest for its tenant, it obeys
/// the rules, and it is durably in the stream.
pub async fn accept<T: Submission>(
    state: &AppState,
    caller: &Caller,
    item: T,
) -> Result<EventRecord, ApiError> {
    caller.require_for(Scope::Ingest, item.tenant())?;
    let reservation = item.reservation().map(str::to_owned);
    let record = item
        .into_record(state.clock.now())
        .map_err(|invalid| ApiError::invalid_item(T::KIND, None, &invalid))?;
    append(state, std::slice::from_ref(&record), &[reservation]).await?;
    Ok(record)
}

/// Accepts a batch all together or not at all: every tenant authorized,
/// the batch charged to the caller's rate limit, every item checked (a 400
/// names the index of the first that breaks a rule), then one append.
pub async fn accept_batch<T: Submission>(
    state: &AppState,
    caller: &Caller,
    items: Vec<T>,
) -> Result<Vec<EventRecord>, ApiError> {
    for item in &items {
        caller.require_for(Scope::Ingest, item.tenant())?;
    }
    state.auth.charge_batch(caller, items.len())?;
    let now = state.clock.now();
    let reservations: Vec<Option<String>> = items
        .iter()
        .map(|item| item.reservation().map(str::to_owned))
        .collect();
    let records = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            item.into_record(now)
                .map_err(|invalid| ApiError::invalid_item(T::KIND, Some(index), &invalid))
        })
        .collect::<Result<Vec<_>, _>>()?;
    append(state, &records, &reservations).await?;
    Ok(records)
}

/// Appends records to one shard of the stream in one round trip
/// (atomically for several): the next shard in turn that is below the
/// high-water mark. Events are first registered as in flight with their
/// tenants' limits (settling the reservations they name, `reservations`
/// holding each record's), so that they hold room from before the
/// pipeline can count them ([`crate::limits`]); should the append then
/// fail, what was registered is a phantom, dropped later (or replaced by
/// the client's retry of the same id). Answers 503 with `Retry-After` whenever it cannot be
/// sure they are stored: Valkey unreachable, every shard full, the shard
/// missing, too few replicas confirming in time (with
/// `FLAGMETER_VALKEY_MIN_REPLICAS`), or no reply within the response timeout
/// (in the last two cases the events may in fact be stored, so clients
/// retry with the same ids).
pub async fn append(
    state: &AppState,
    records: &[EventRecord],
    reservations: &[Option<String>],
) -> Result<(), ApiError> {
    let Some(shard) = state.backlog.shard_with_room(state.high_water) else {
        metrics::counter!("flagmeter_backpressure_responses_total", "cause" => "high_water")
            .increment(1);
        tracing::warn!(
            backlog = state.backlog.entries(0),
            shards = state.shards.len(),
            high_water = state.high_water,
            "stream above its high-water mark; refusing ingest until the pipeline catches up"
        );
        return Err(ApiError::unavailable(
            "event stream is full; the pipeline is catching up",
        ));
    };
    if records.iter().any(|r| !r.void) {
        let registered = state.limits.register(state, records, reservations).await;
        if registered.is_err() {
            metrics::counter!("flagmeter_backpressure_responses_total", "cause" => "valkey_unavailable")
                .increment(1);
        }
        registered?;
    }
    let keys = state.shards.get(shard);
    let payloads: Vec<Vec<u8>> = records.iter().map(EventRecord::encode).collect();
    let mut conn = state.valkey.clone();
    let started = std::time::Instant::now();
    let appended =
        stream::append_replicated(&mut conn, &keys.stream, &payloads, state.replication).await;
    metrics::histogram!("flagmeter_xadd_duration_seconds").record(started.elapsed().as_secs_f64());
    let cause = match &appended {
        Ok(_) => None,
        Err(AppendError::NotReplicated { .. }) => Some("not_replicated"),
        Err(_) => Some("valkey_unavailable"),
    };
    if let Some(cause) = cause {
        metrics::counter!("flagmeter_backpressure_responses_total", "cause" => cause).increment(1);
    }
    match appended {
        Ok(_) => {
            metrics::counter!("flagmeter_events_accepted_total").increment(records.len() as u64);
            Ok(())
        }
        Err(AppendError::StreamMissing) => {
            tracing::error!(
                stream = %keys.stream,
                "stream is missing: Valkey lost its data; recreating stream and group"
            );
            if let Err(err) = stream::ensure_group(&mut conn, keys).await {
                tracing::warn!(%err, "cannot recreate the stream");
            }
            Err(ApiError::unavailable("event stream unavailable"))
        }
        Err(AppendError::NotReplicated { confirmed, wanted }) => {
            tracing::warn!(
                confirmed,
                wanted,
                stream = %keys.stream,
                "too few Valkey replicas confirmed the append; the client retries"
            );
            Err(ApiError::unavailable(
                "event not yet confirmed by enough Valkey replicas",
            ))
        }
        Err(AppendError::Redis(err)) => {
            tracing::warn!(%err, "cannot append to the stream");
            Err(ApiError::unavailable("event stream unavailable"))
        }
    }
}
