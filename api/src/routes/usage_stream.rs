//! `GET /api/usage/stream`: every tenant's usage, pushed as Server-Sent
//! Events. It feeds the dashboard at `/`, and anything else that wants live
//! figures without polling.
//!
//! The figures come from the one shared reader in
//! [`crate::dashboard::snapshot`]: a connection costs the database nothing.

use std::time::Duration;

use futures::{StreamExt, stream::BoxStream};
use poem::{
    IntoResponse, Response,
    web::sse::{Event, SSE},
};
use poem_openapi::{
    ApiResponse, OpenApi,
    payload::{EventStream, Payload},
    registry::{MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::Type,
};

use super::ApiTags;
use crate::{
    auth::{ApiKey, Auth, Scope},
    dashboard::snapshot::{DashboardEvent, Snapshots},
    error::ApiError,
    state::AppState,
};

/// A comment line this often keeps idle proxies from closing the stream
/// while no figures can be read.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The event stream, documented as a stream of [`DashboardEvent`]s; unlike
/// poem-openapi's `EventStream` it also sends a `retry:` line, and its
/// events are serialized once for all viewers.
pub struct UsageEvents(BoxStream<'static, Event>);

impl IntoResponse for UsageEvents {
    fn into_response(self) -> Response {
        SSE::new(self.0).keep_alive(KEEP_ALIVE).into_response()
    }
}

impl ApiResponse for UsageEvents {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "A `retry:` line, then one `snapshot` as soon as the figures \
                              are read, then every second a `snapshot` if they changed or a \
                              `heartbeat` if not. JSON in each event's `data`.",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: "text/event-stream",
                    schema: EventStream::<BoxStream<'static, DashboardEvent>>::schema_ref(),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        DashboardEvent::register(registry);
    }
}

pub struct UsageStreamApi {
    snapshots: Snapshots,
    auth: Auth,
}

impl UsageStreamApi {
    pub fn new(state: &AppState) -> Self {
        Self {
            snapshots: state.snapshots.clone(),
            auth: state.auth.clone(),
        }
    }
}

#[OpenApi(tag = "ApiTags::Usage")]
impl UsageStreamApi {
    /// Every tenant's usage, live (Server-Sent Events).
    ///
    /// The first 1000 tenants in id order, each with its period usage,
    /// quota and budget, lowest alert threshold and the limits that have
    /// reached it, time zone, per-feature totals and costs, and tokens per
    /// minute over the last hour. Read once a second for all connections
    /// together. Needs a `read` key for all tenants (the dashboard sends
    /// it with `fetch`, since a browser's `EventSource` cannot); the stream
    /// ends soon after the key is revoked.
    #[oai(
        path = "/api/usage/stream",
        method = "get",
        operation_id = "streamUsage"
    )]
    async fn usage_stream(&self, auth: ApiKey) -> Result<UsageEvents, ApiError> {
        auth.0.require_all_tenants(Scope::Read)?;
        // A revoked key's stream ends, as its next request would be refused.
        let revoked = Box::pin(self.auth.clone().revoked(auth.0));
        Ok(UsageEvents(
            self.snapshots.subscribe().take_until(revoked).boxed(),
        ))
    }
}
