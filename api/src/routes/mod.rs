//! The HTTP surface: the OpenAPI-described routes, their docs, and the
//! middleware every request passes through.

mod check;
mod dead_letters;
mod event_body;
mod events;
mod explorer;
mod health;
mod keys;
mod operations;
mod otlp;
mod paging;
mod prices;
mod reference;
mod reservations;
pub mod rules;
mod spec;
mod tenants;
mod usage;
mod usage_stream;
mod voids;

pub(crate) use tenants::AlertKind;
pub(crate) use usage::{BudgetUsage, QuotaUsage};

use std::sync::Arc;

use poem::{Endpoint, EndpointExt, IntoResponse, Route};
use poem_openapi::{ApiResponse, OpenApiService, Tags, payload::Json, types::ToJSON};

use metrics_exporter_prometheus::PrometheusHandle;
use poem::middleware::{CatchPanic, Tracing};

use crate::{
    auth,
    body_limit::limit_body,
    dashboard,
    error::{ApiError, ErrorDetails, json_errors, with_retry_after},
    http_metrics,
    state::AppState,
};
use operations::{Operations, framework_refusals};

/// Groups of routes in the docs.
#[derive(Tags)]
pub(crate) enum ApiTags {
    /// Recording usage events, listing those counted, and the dead letters
    /// of those that could not be.
    Events,
    /// How much of its quota a tenant has used.
    Usage,
    /// Reservations: room held for a model call before it is made, under
    /// the tenant's quota, budget and per-minute limits.
    Limits,
    /// Tenant configuration, Slack and signed webhooks, alert history.
    Tenants,
    /// Effective-dated prices per feature and token class.
    Prices,
    /// API keys: who may call the api, for what and for which tenant.
    Keys,
    /// Liveness and readiness probes.
    Health,
}

/// A 400 naming the field of the body that broke a rule.
pub(crate) fn invalid(field: &str, reason: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(
        "invalid request",
        ErrorDetails::field(field, reason.to_string()),
    )
}

/// The answer of a route whose only success is a 200 with a JSON body.
#[derive(ApiResponse)]
pub(crate) enum Found<T: ToJSON + Send + Sync> {
    /// What was asked for.
    #[oai(status = 200)]
    Ok(Json<T>),
}

/// The answer of a route that adds something: a 201 with what it added.
#[derive(ApiResponse)]
pub(crate) enum Created<T: ToJSON + Send + Sync> {
    /// Created.
    #[oai(status = 201)]
    Created(Json<T>),
}

/// The answer of a route that queues work into the stream: a 202 once it
/// is durably there.
#[derive(ApiResponse)]
pub(crate) enum Accepted<T: ToJSON + Send + Sync> {
    /// Durably queued; it will be applied exactly once.
    #[oai(status = 202)]
    Accepted(Json<T>),
}

/// The answer of a `PUT` that creates or replaces: 201 or 200.
#[derive(ApiResponse)]
pub(crate) enum Saved<T: ToJSON + Send + Sync> {
    /// Updated.
    #[oai(status = 200)]
    Updated(Json<T>),
    /// Created.
    #[oai(status = 201)]
    Created(Json<T>),
}

impl<T: ToJSON + Send + Sync> Saved<T> {
    /// 201 if the save `created` the resource, else 200.
    pub(crate) fn new(created: bool, saved: T) -> Self {
        if created {
            Self::Created(Json(saved))
        } else {
            Self::Updated(Json(saved))
        }
    }
}

/// Every group of routes.
type Apis = (
    events::EventsApi,
    otlp::OtlpApi,
    voids::VoidsApi,
    dead_letters::DeadLettersApi,
    usage::UsageApi,
    check::CheckApi,
    reservations::ReservationsApi,
    usage_stream::UsageStreamApi,
    tenants::TenantConfigApi,
    tenants::SlackWebhookApi,
    tenants::SignedWebhookApi,
    tenants::AlertHistoryApi,
    prices::PricesApi,
    keys::KeysApi,
    health::HealthApi,
    dashboard::DashboardApi,
);

/// The OpenAPI service: every documented route.
pub fn openapi(state: &AppState) -> OpenApiService<Apis, ()> {
    let apis = (
        events::EventsApi(state.clone()),
        otlp::OtlpApi(state.clone()),
        voids::VoidsApi(state.clone()),
        dead_letters::DeadLettersApi(state.clone()),
        usage::UsageApi(state.clone()),
        check::CheckApi(state.clone()),
        reservations::ReservationsApi(state.clone()),
        usage_stream::UsageStreamApi::new(state),
        tenants::TenantConfigApi(state.clone()),
        tenants::SlackWebhookApi(state.clone()),
        tenants::SignedWebhookApi(state.clone()),
        tenants::AlertHistoryApi(state.clone()),
        prices::PricesApi(state.clone()),
        keys::KeysApi(state.clone()),
        health::HealthApi(state.clone()),
        dashboard::DashboardApi,
    );
    OpenApiService::new(apis, "FlagMeter", env!("CARGO_PKG_VERSION")).description(
        "Meters AI token usage per tenant: ingest usage events, read how much \
             of its monthly quota each tenant has used.",
    )
}

/// The whole application: the dashboard at `/`, API routes, `/openapi.json`,
/// `/docs` (Swagger UI), `/reference` (Scalar; both served from the binary,
/// no CDN), `/metrics`, with JSON errors (a refused parameter named), bounded
/// request bodies, a tracing span and metrics per request, an `Allow` header
/// on every 405, the
/// configured `Retry-After` on every 503, and a JSON
/// 500 instead of a dropped connection should a handler panic.
pub fn app(state: AppState, max_body_bytes: usize, metrics: PrometheusHandle) -> impl Endpoint {
    let api = openapi(&state);
    let spec = spec::Spec::of(&api);
    let operations = Arc::new(Operations::from_spec(spec.json()));
    let docs = html_page(spec.embed_in(api.swagger_ui_html()));
    let reference = reference::endpoint(spec.embed_in(api.scalar_html()));
    let spec = spec.json().to_owned();
    let retry_after_secs = state.retry_after_secs;
    Route::new()
        .nest("/", api)
        .at(
            "/openapi.json",
            poem::get(poem::endpoint::make_sync(move |_| {
                poem::Response::builder()
                    .content_type("application/json; charset=utf-8")
                    .body(spec.clone())
            })),
        )
        .nest("/docs", docs)
        .at("/reference", reference)
        .at(
            "/metrics",
            poem::get(poem::endpoint::make_sync(move |_| {
                poem::Response::builder()
                    .content_type(runtime::metrics::CONTENT_TYPE_TEXT)
                    .body(runtime::metrics::render(&metrics))
            })),
        )
        .data(state.auth.clone())
        .data(otlp::BodyLimit(max_body_bytes))
        .around(move |next, req| limit_body(next, req, max_body_bytes))
        .around(move |next, req| auth::before_body(next, req, state.auth.clone()))
        .around(move |next, req| with_retry_after(next, req, retry_after_secs))
        .around(move |next, req| framework_refusals(next, req, operations.clone()))
        .around(http_metrics::record)
        .with(CatchPanic::new().with_handler(|_| ApiError::panicked().into_response()))
        .with(Tracing)
        .catch_all_error(json_errors)
}

/// Serves one HTML page.
fn html_page(html: String) -> impl Endpoint {
    poem::endpoint::make_sync(move |_| poem::web::Html(html.clone()))
}
