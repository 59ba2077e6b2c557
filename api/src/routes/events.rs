//! `POST /api/events` and `POST /api/events/batch`: accept usage events,
//! as JSON or as MessagePack ([`crate::msgpack`]), answering JSON. The
//! bodies and how they are read are [`super::event_body`].
//!
//! Both answer 202 only once the events are durably in the stream. A batch is
//! validated as a whole before anything is stored: one bad event refuses the
//! batch with a 400 naming the event's index, field and rule.

use chrono::{DateTime, Utc};
use poem_openapi::{Object, OpenApi, param::Query, payload::Json};
use store::ledger::EventQuery;

use super::{
    Accepted, ApiTags, Found,
    event_body::{BatchIn, EventIn},
    explorer::{self, EventPage},
    invalid,
    paging::Limit,
    rules::{FeatureName, TenantSlug},
};
use crate::{
    auth::ApiKey,
    error::{ApiError, BodyError},
    ingest,
    msgpack::JsonOrMsgPack,
    state::AppState,
};

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

/// The routes below, over the shared state.
pub struct EventsApi(pub AppState);

#[OpenApi(tag = "ApiTags::Events")]
impl EventsApi {
    /// Record one usage event.
    #[oai(path = "/api/events", method = "post", operation_id = "recordEvent")]
    async fn post_event(
        &self,
        auth: ApiKey,
        body: JsonOrMsgPack<EventIn>,
    ) -> Result<Accepted<EventAccepted>, BodyError> {
        let record = ingest::accept(&self.0, &auth.0, body.0).await?;
        Ok(Accepted::Accepted(Json(EventAccepted {
            success: true,
            event_id: record.id,
        })))
    }

    /// A tenant's counted events, newest first (keyset-paginated): the
    /// event explorer ([`super::explorer`]).
    #[oai(path = "/api/events", method = "get", operation_id = "listEvents")]
    // Each query parameter is an argument: that is how poem-openapi
    // documents them.
    #[allow(clippy::too_many_arguments)]
    async fn list_events(
        &self,
        auth: ApiKey,
        /// The tenant whose events to list; a key restricted to a tenant
        /// defaults to its own.
        tenant: Query<Option<TenantSlug>>,
        /// Event time from (RFC 3339, inclusive).
        from: Query<Option<DateTime<Utc>>>,
        /// Event time to (RFC 3339, exclusive).
        to: Query<Option<DateTime<Utc>>>,
        /// Only this feature.
        feature: Query<Option<FeatureName>>,
        /// Most events to return (1–1000).
        limit: Limit,
        /// `nextCursor` of the previous page.
        #[oai(validator(max_length = 400))]
        cursor: Query<Option<String>>,
    ) -> Result<Found<EventPage>, ApiError> {
        let tenant = match (tenant.0, auth.0.tenant()) {
            (Some(asked), _) => asked.0,
            (None, Some(own)) => own.to_owned(),
            (None, None) => {
                return Err(invalid(
                    "tenant",
                    "is required: this key may read every tenant, so name one",
                ));
            }
        };
        let query = EventQuery {
            tenant,
            from: from.0,
            to: to.0,
            feature: feature.0.map(|f| f.0),
            limit: limit.0,
            after: None,
        };
        explorer::list(&self.0, &auth, query, cursor.as_deref()).await
    }

    /// Record up to 1000 usage events at once.
    #[oai(
        path = "/api/events/batch",
        method = "post",
        operation_id = "recordEventBatch"
    )]
    async fn post_batch(
        &self,
        auth: ApiKey,
        body: JsonOrMsgPack<BatchIn>,
    ) -> Result<Accepted<BatchAccepted>, BodyError> {
        let records = ingest::accept_batch(&self.0, &auth.0, body.0.events).await?;
        Ok(Accepted::Accepted(Json(BatchAccepted {
            accepted: records.len() as u32,
            event_ids: records.into_iter().map(|r| r.id).collect(),
        })))
    }
}
