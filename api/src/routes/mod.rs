//! The HTTP surface: the OpenAPI-described routes, their docs, and the
//! middleware every request passes through.

mod events;
mod health;
mod keys;
mod tenants;
mod usage;
mod usage_stream;

use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::{OpenApiService, Tags};

use metrics_exporter_prometheus::PrometheusHandle;
use poem::middleware::{CatchPanic, Tracing};

use crate::{body_limit::limit_body, dashboard, error::json_errors, http_metrics, state::AppState};

/// Groups of routes in the docs.
#[derive(Tags)]
enum ApiTags {
    /// Recording usage events.
    Events,
    /// How much of its quota a tenant has used.
    Usage,
    /// Tenant configuration, Slack webhooks and alert history.
    Tenants,
    /// API keys: who may call the api, for what and for which tenant.
    Keys,
    /// Liveness and readiness probes.
    Health,
}

/// Refuses a malformed tenant slug in a path with a 400.
fn check_tenant(tenant: &str) -> Result<(), crate::error::ApiError> {
    entity::validate::tenant(tenant).map_err(|invalid| {
        crate::error::ApiError::bad_request(
            "invalid tenant",
            serde_json::json!({ "field": invalid.field, "reason": invalid.reason }),
        )
    })
}

/// A 400 naming the field of the body that broke a rule.
fn invalid(field: &str, reason: impl std::fmt::Display) -> crate::error::ApiError {
    crate::error::ApiError::bad_request(
        "invalid request",
        serde_json::json!({ "field": field, "reason": reason.to_string() }),
    )
}

/// Every group of routes.
type Apis = (
    events::EventsApi,
    usage::UsageApi,
    usage_stream::UsageStreamApi,
    tenants::TenantsApi,
    keys::KeysApi,
    health::HealthApi,
    dashboard::DashboardApi,
);

/// The OpenAPI service: every documented route.
pub fn openapi(state: &AppState) -> OpenApiService<Apis, ()> {
    let apis = (
        events::EventsApi::new(state.clone()),
        usage::UsageApi::new(state.clone()),
        usage_stream::UsageStreamApi::new(state),
        tenants::TenantsApi::new(state.clone()),
        keys::KeysApi::new(state.clone()),
        health::HealthApi::new(state.clone()),
        dashboard::DashboardApi,
    );
    OpenApiService::new(apis, "FlagMeter", env!("CARGO_PKG_VERSION")).description(
        "Meters AI token usage per tenant: ingest usage events, read how much \
             of its monthly quota each tenant has used.",
    )
}

/// The whole application: the dashboard at `/`, API routes, `/openapi.json`,
/// `/docs`, `/metrics`, with JSON errors, bounded request bodies, a tracing
/// span and metrics per request, and a 500 instead of a dropped connection
/// should a handler panic.
pub fn app(state: AppState, max_body_bytes: usize, metrics: PrometheusHandle) -> impl Endpoint {
    let api = openapi(&state);
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    Route::new()
        .nest("/", api)
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .at(
            "/metrics",
            poem::get(poem::endpoint::make_sync(move |_| metrics.render())),
        )
        .data(state.auth.clone())
        .around(move |next, req| limit_body(next, req, max_body_bytes))
        .around(http_metrics::record)
        .with(CatchPanic::new())
        .with(Tracing)
        .catch_all_error(json_errors)
}
