//! `POST /api/events` and `POST /api/events/batch`: accept usage events,
//! as JSON or as MessagePack ([`crate::msgpack`]), answering JSON.
//!
//! Both answer 202 only once the events are durably in the stream. A batch is
//! validated as a whole before anything is stored: one bad event refuses the
//! batch with a 400 naming the event's index, field and rule.

use chrono::{DateTime, Utc};
use entity::validate::TokenClasses;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::Query,
    payload::Json,
    types::{Example, ParseError, ParseFromJSON, ParseResult},
};
use serde_json::json;

use super::{
    ApiTags, Found,
    explorer::{self, EventPage, Listing},
    paging::default_page,
    rules::{EventId, FeatureName, TenantSlug},
};
use crate::{
    auth::{ApiKey, Scope},
    error::{ApiError, BodyError},
    ingest::{self, Incoming},
    msgpack::JsonOrMsgPack,
    state::AppState,
};

/// One usage event.
///
/// The character rules of `tenant`, `feature` and `id` are in the spec as
/// `pattern`s ([`super::rules`]), but not as poem-openapi validators, which
/// compile their regex on every request (that cost more than half the api's
/// CPU under load): the handler checks them with the domain rules
/// (`entity::validate`) and answers a 400 naming the field.
#[derive(Debug, Object)]
#[oai(example, rename_all = "camelCase")]
pub struct EventIn {
    /// Tenant slug: 1–64 of `[A-Za-z0-9._-]`, starting with a letter or digit.
    /// A tenant never seen before is created with the default quota.
    #[oai(deserialize_with = "named::tenant")]
    pub tenant: TenantSlug,
    /// Model or product feature, e.g. `anthropic/claude-3.5-sonnet`:
    /// 1–128 printable ASCII characters without spaces.
    #[oai(deserialize_with = "named::feature")]
    pub feature: FeatureName,
    /// Tokens used, from 1 to 1,000,000,000. Optional when token classes
    /// are given (it is then their sum); when both are given it must equal
    /// their sum. An event with `tokens` alone is unclassified (priced at
    /// the input price).
    #[oai(
        nullable,
        validator(minimum(value = "1"), maximum(value = "1000000000")),
        deserialize_with = "named::tokens"
    )]
    pub tokens: Option<i64>,
    /// Input (prompt) tokens, from 0 to 1,000,000,000.
    #[oai(
        nullable,
        validator(minimum(value = "0"), maximum(value = "1000000000")),
        deserialize_with = "named::input_tokens"
    )]
    pub input_tokens: Option<i64>,
    /// Output (completion) tokens, from 0 to 1,000,000,000.
    #[oai(
        nullable,
        validator(minimum(value = "0"), maximum(value = "1000000000")),
        deserialize_with = "named::output_tokens"
    )]
    pub output_tokens: Option<i64>,
    /// Input tokens read from the provider's prompt cache, from 0 to
    /// 1,000,000,000.
    #[oai(
        nullable,
        validator(minimum(value = "0"), maximum(value = "1000000000")),
        deserialize_with = "named::cache_read_tokens"
    )]
    pub cache_read_tokens: Option<i64>,
    /// Input tokens written to the provider's prompt cache, from 0 to
    /// 1,000,000,000.
    #[oai(
        nullable,
        validator(minimum(value = "0"), maximum(value = "1000000000")),
        deserialize_with = "named::cache_write_tokens"
    )]
    pub cache_write_tokens: Option<i64>,
    /// Client event id, 1–128 printable ASCII characters: the idempotency
    /// key. Sending the same id for a tenant again counts it once. Generated
    /// (UUIDv7) when absent.
    #[oai(nullable, deserialize_with = "named::id")]
    pub id: Option<EventId>,
    /// Event time (RFC 3339); at most 35 days in the past and 5 minutes in
    /// the future. Defaults to the time of receipt.
    #[oai(nullable, deserialize_with = "named::timestamp")]
    pub timestamp: Option<DateTime<Utc>>,
}

impl Example for EventIn {
    fn example() -> Self {
        Self {
            tenant: TenantSlug("acme-corp".to_owned()),
            feature: FeatureName("gpt-4-turbo".to_owned()),
            tokens: Some(1500),
            input_tokens: None,
            output_tokens: None,
            cache_read_tokens: None,
            cache_write_tokens: None,
            id: None,
            timestamp: None,
        }
    }
}

/// Field parsers that put the field's name into a type error ("field
/// `tokens`: expected integer"), which poem-openapi leaves out, and that
/// refuse a number where a string belongs (poem-openapi would coerce it).
mod named {
    use super::*;
    use crate::routes::rules::{named_field as parse, named_string as string};
    use serde_json::Value;

    pub fn tenant(value: Option<Value>) -> ParseResult<TenantSlug> {
        string("tenant", value)
    }

    pub fn feature(value: Option<Value>) -> ParseResult<FeatureName> {
        string("feature", value)
    }

    pub fn tokens(value: Option<Value>) -> ParseResult<Option<i64>> {
        parse("tokens", value)
    }

    pub fn input_tokens(value: Option<Value>) -> ParseResult<Option<i64>> {
        parse("inputTokens", value)
    }

    pub fn output_tokens(value: Option<Value>) -> ParseResult<Option<i64>> {
        parse("outputTokens", value)
    }

    pub fn cache_read_tokens(value: Option<Value>) -> ParseResult<Option<i64>> {
        parse("cacheReadTokens", value)
    }

    pub fn cache_write_tokens(value: Option<Value>) -> ParseResult<Option<i64>> {
        parse("cacheWriteTokens", value)
    }

    pub fn id(value: Option<Value>) -> ParseResult<Option<EventId>> {
        string("id", value)
    }

    pub fn timestamp(value: Option<Value>) -> ParseResult<Option<DateTime<Utc>>> {
        string("timestamp", value)
    }
}

impl EventIn {
    fn incoming(&self) -> Incoming<'_> {
        Incoming {
            tenant: &self.tenant,
            feature: &self.feature,
            tokens: self.tokens,
            classes: TokenClasses {
                input: self.input_tokens,
                output: self.output_tokens,
                cache_read: self.cache_read_tokens,
                cache_write: self.cache_write_tokens,
            },
            id: self.id.as_deref(),
            timestamp: self.timestamp,
        }
    }
}

/// Up to 1000 events, stored all together or not at all.
#[derive(Debug, Object)]
#[oai(example)]
pub struct BatchIn {
    #[oai(
        validator(min_items = 1, max_items = 1000),
        deserialize_with = "parse_indexed_events"
    )]
    pub events: Vec<EventIn>,
}

impl Example for BatchIn {
    fn example() -> Self {
        Self {
            events: vec![EventIn::example()],
        }
    }
}

/// Parses the events one by one so that an error names the event's index.
fn parse_indexed_events(value: Option<serde_json::Value>) -> ParseResult<Vec<EventIn>> {
    match value {
        Some(serde_json::Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                EventIn::parse_from_json(Some(item)).map_err(|err| {
                    ParseError::custom(format!("events[{index}]: {}", err.message()))
                })
            })
            .collect(),
        other => Err(ParseError::expected_type(other.unwrap_or_default())),
    }
}

/// The event is in the stream and will be counted.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct EventAccepted {
    pub success: bool,
    /// The event's id: the client's, or the one generated for it.
    pub event_id: String,
}

/// The batch is in the stream and will be counted.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct BatchAccepted {
    /// Number of events stored.
    pub accepted: u32,
    /// Ids of the events, in the order sent.
    pub event_ids: Vec<String>,
}

#[derive(ApiResponse)]
enum PostEventResponse {
    /// Durably queued; it will be counted exactly once.
    #[oai(status = 202)]
    Accepted(Json<EventAccepted>),
}

#[derive(ApiResponse)]
enum PostBatchResponse {
    /// Every event durably queued; each will be counted exactly once.
    #[oai(status = 202)]
    Accepted(Json<BatchAccepted>),
}

/// The routes below, over the shared state.
pub struct EventsApi(pub AppState);

#[OpenApi(tag = "ApiTags::Events")]
impl EventsApi {
    /// Record one usage event.
    #[oai(path = "/api/events", method = "post")]
    async fn post_event(
        &self,
        auth: ApiKey,
        body: JsonOrMsgPack<EventIn>,
    ) -> Result<PostEventResponse, BodyError> {
        auth.0.require_for(Scope::Ingest, &body.tenant)?;
        let record = body.incoming().into_record(Utc::now()).map_err(|invalid| {
            ApiError::bad_request(
                "invalid event",
                json!({ "field": invalid.field, "reason": invalid.reason }),
            )
        })?;
        ingest::append(&self.0, std::slice::from_ref(&record)).await?;
        Ok(PostEventResponse::Accepted(Json(EventAccepted {
            success: true,
            event_id: record.id,
        })))
    }

    /// A tenant's counted events, newest first (keyset-paginated): the
    /// event explorer ([`super::explorer`]).
    #[oai(path = "/api/events", method = "get")]
    // Each query parameter is an argument: that is how poem-openapi
    // documents them.
    #[allow(clippy::too_many_arguments)]
    async fn list_events(
        &self,
        auth: ApiKey,
        /// The tenant whose events to list.
        tenant: Query<TenantSlug>,
        /// Event time from (RFC 3339, inclusive).
        from: Query<Option<DateTime<Utc>>>,
        /// Event time to (RFC 3339, exclusive).
        to: Query<Option<DateTime<Utc>>>,
        /// Only this feature.
        feature: Query<Option<FeatureName>>,
        /// Most events to return (1–1000).
        #[oai(
            default = "default_page",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u64>,
        /// `nextCursor` of the previous page.
        #[oai(validator(max_length = 400))]
        cursor: Query<Option<String>>,
    ) -> Result<Found<EventPage>, ApiError> {
        let listing = Listing {
            tenant: tenant.0,
            from: from.0,
            to: to.0,
            feature: feature.0,
            limit: limit.0,
            cursor: cursor.0,
        };
        explorer::list(&self.0, &auth, listing).await
    }

    /// Record up to 1000 usage events at once.
    #[oai(path = "/api/events/batch", method = "post")]
    async fn post_batch(
        &self,
        auth: ApiKey,
        body: JsonOrMsgPack<BatchIn>,
    ) -> Result<PostBatchResponse, BodyError> {
        for event in &body.events {
            auth.0.require_for(Scope::Ingest, &event.tenant)?;
        }
        self.0.auth.charge_batch(&auth.0, body.events.len())?;
        let now = Utc::now();
        let records = body
            .events
            .iter()
            .enumerate()
            .map(|(index, event)| {
                event.incoming().into_record(now).map_err(|invalid| {
                    ApiError::bad_request(
                        "invalid event in batch",
                        json!({ "index": index, "field": invalid.field, "reason": invalid.reason }),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        ingest::append(&self.0, &records).await?;
        Ok(PostBatchResponse::Accepted(Json(BatchAccepted {
            accepted: records.len() as u32,
            event_ids: records.into_iter().map(|r| r.id).collect(),
        })))
    }
}
