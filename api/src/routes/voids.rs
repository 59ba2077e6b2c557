//! `POST /api/events/void` and `POST /api/events/void/batch`: cancel events
//! by `(tenant, id)`.
//!
//! A void travels like an event: it is answered `202` once it is durably in
//! the stream, and the pipeline applies it exactly once through the ledger
//! (`pipeline/src/writer.rs`): the event's tokens leave usage, the time
//! series and the dashboard; a void that comes before its event (or for an
//! id never seen) leaves a tombstone, so the event, should it arrive within
//! the ledger's retention, is never counted. Voiding again changes nothing.
//! Usage that drops fires nothing and re-arms no alert already sent.

use chrono::{DateTime, Utc};
use domain::validate::{self, Invalid};
use poem_openapi::{Object, OpenApi, payload::Json, types::Example};
use stream::EventRecord;

use super::{
    Accepted, ApiTags,
    rules::{EventId, TenantSlug},
};
use crate::{auth::ApiKey, error::BodyError, ingest, state::AppState};

/// The event to cancel.
#[derive(Debug, Object)]
#[oai(example)]
pub struct VoidIn {
    /// The event's tenant.
    pub tenant: TenantSlug,
    /// The event's id, as sent (or as answered in `eventId`).
    pub id: EventId,
}

impl Example for VoidIn {
    fn example() -> Self {
        Self {
            tenant: TenantSlug("acme-corp".to_owned()),
            id: EventId("call-7f3a".to_owned()),
        }
    }
}

impl ingest::Submission for VoidIn {
    const KIND: &'static str = "void";

    fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The domain rules of an event's `tenant` and `id`, and the record.
    fn into_record(self, now: DateTime<Utc>) -> Result<EventRecord, Invalid> {
        validate::tenant(&self.tenant)?;
        validate::event_id(&self.id)?;
        Ok(EventRecord::void(
            self.id.0,
            self.tenant.0,
            now.timestamp_millis(),
        ))
    }
}

/// Up to 1000 voids, stored all together or not at all.
#[derive(Debug, Object)]
#[oai(example)]
pub struct VoidBatchIn {
    #[oai(validator(min_items = 1, max_items = 1000))]
    pub voids: Vec<VoidIn>,
}

impl Example for VoidBatchIn {
    fn example() -> Self {
        Self {
            voids: vec![VoidIn::example()],
        }
    }
}

/// The void is in the stream and will be applied.
#[derive(Debug, Object)]
pub struct VoidAccepted {
    pub success: bool,
    pub tenant: String,
    pub id: String,
}

/// The voids are in the stream and will be applied.
#[derive(Debug, Object)]
pub struct VoidBatchAccepted {
    /// Number of voids stored.
    pub accepted: u32,
}

/// The routes below, over the shared state.
pub struct VoidsApi(pub AppState);

#[OpenApi(tag = "ApiTags::Events")]
impl VoidsApi {
    /// Void (cancel) one event: its tokens leave usage once applied.
    #[oai(path = "/api/events/void", method = "post", operation_id = "voidEvent")]
    async fn post_void(
        &self,
        auth: ApiKey,
        body: Json<VoidIn>,
    ) -> Result<Accepted<VoidAccepted>, BodyError> {
        let record = ingest::accept(&self.0, &auth.0, body.0).await?;
        Ok(Accepted::Accepted(Json(VoidAccepted {
            success: true,
            tenant: record.tenant,
            id: record.id,
        })))
    }

    /// Void up to 1000 events at once.
    #[oai(
        path = "/api/events/void/batch",
        method = "post",
        operation_id = "voidEventBatch"
    )]
    async fn post_void_batch(
        &self,
        auth: ApiKey,
        body: Json<VoidBatchIn>,
    ) -> Result<Accepted<VoidBatchAccepted>, BodyError> {
        let records = ingest::accept_batch(&self.0, &auth.0, body.0.voids).await?;
        Ok(Accepted::Accepted(Json(VoidBatchAccepted {
            accepted: records.len() as u32,
        })))
    }
}
