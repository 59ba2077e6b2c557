//! Ingest: turning validated client events (and voids) into stream records
//! and appending them to Valkey. This path never touches PostgreSQL: an
//! event is accepted once it is durably in the stream, and counted by the
//! pipeline later.

use chrono::{DateTime, Utc};
use entity::validate::{self, Invalid, TokenClasses};
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
    let record = item
        .into_record(Utc::now())
        .map_err(|invalid| ApiError::invalid_item(T::KIND, None, &invalid))?;
    append(state, std::slice::from_ref(&record)).await?;
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
    let now = Utc::now();
    let records = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            item.into_record(now)
                .map_err(|invalid| ApiError::invalid_item(T::KIND, Some(index), &invalid))
        })
        .collect::<Result<Vec<_>, _>>()?;
    append(state, &records).await?;
    Ok(records)
}

/// One event as a client sent it, before the domain rules are applied.
pub struct Incoming {
    pub tenant: String,
    pub feature: String,
    /// Absent when the classes say it.
    pub tokens: Option<i64>,
    pub classes: TokenClasses,
    pub id: Option<String>,
    pub timestamp: Option<DateTime<Utc>>,
}

impl Incoming {
    /// Applies every rule and builds the stream record; a missing id becomes
    /// a UUIDv7 (time-ordered, so the ledger index stays compact), a missing
    /// timestamp the receipt time.
    pub fn into_record(self, now: DateTime<Utc>) -> Result<EventRecord, Invalid> {
        validate::tenant(&self.tenant)?;
        validate::feature(&self.feature)?;
        let tokens = validate::event_tokens(self.tokens, &self.classes)?;
        if let Some(id) = &self.id {
            validate::event_id(id)?;
        }
        let occurred = self.timestamp.unwrap_or(now);
        validate::occurred_at(occurred, now)?;
        Ok(EventRecord::new(
            self.id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            self.tenant,
            self.feature,
            tokens,
            occurred.timestamp_millis(),
            now.timestamp_millis(),
        )
        .with_classes(self.classes))
    }
}

/// Appends records to one shard of the stream in one round trip
/// (atomically for several): the next shard in turn that is below the
/// high-water mark. Answers 503 with `Retry-After` whenever it cannot be
/// sure they are stored: Valkey unreachable, every shard full, the shard
/// missing, too few replicas confirming in time (with
/// `FLAGMETER_VALKEY_MIN_REPLICAS`), or no reply within the response timeout
/// (in the last two cases the events may in fact be stored, so clients
/// retry with the same ids).
pub async fn append(state: &AppState, records: &[EventRecord]) -> Result<(), ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn incoming(tenant: &str) -> Incoming {
        Incoming {
            tenant: tenant.to_owned(),
            feature: "gpt-4o".to_owned(),
            tokens: Some(10),
            classes: TokenClasses::default(),
            id: None,
            timestamp: None,
        }
    }

    #[test]
    fn a_missing_id_and_timestamp_are_filled_in() {
        let now = Utc::now();
        let record = incoming("acme").into_record(now).unwrap();
        assert_eq!(record.occurred_ms, now.timestamp_millis());
        assert_eq!(record.received_ms, now.timestamp_millis());
        assert!(uuid::Uuid::parse_str(&record.id).is_ok());
    }

    #[test]
    fn a_client_id_and_timestamp_are_kept() {
        let now = Utc::now();
        let at = now - Duration::days(3);
        let record = Incoming {
            id: Some("call-42".to_owned()),
            timestamp: Some(at),
            ..incoming("acme")
        }
        .into_record(now)
        .unwrap();
        assert_eq!(record.id, "call-42");
        assert_eq!(record.occurred_ms, at.timestamp_millis());
    }

    #[test]
    fn every_rule_is_applied() {
        let now = Utc::now();
        let err = incoming("-acme").into_record(now).unwrap_err();
        assert_eq!(err.field, "tenant");
        let err = Incoming {
            timestamp: Some(now - Duration::days(36)),
            ..incoming("acme")
        }
        .into_record(now)
        .unwrap_err();
        assert_eq!(err.field, "timestamp");
        let err = Incoming {
            tokens: Some(11),
            classes: TokenClasses {
                input: Some(10),
                ..Default::default()
            },
            ..incoming("acme")
        }
        .into_record(now)
        .unwrap_err();
        assert_eq!(err.field, "tokens");
    }

    #[test]
    fn classes_alone_make_the_tokens() {
        let record = Incoming {
            tokens: None,
            classes: TokenClasses {
                input: Some(10),
                cache_write: Some(5),
                ..Default::default()
            },
            ..incoming("acme")
        }
        .into_record(Utc::now())
        .unwrap();
        assert_eq!(record.tokens, 15);
        assert_eq!(record.cache_write_tokens, Some(5));
    }
}
