//! The HTTP surface: the OpenAPI-described routes, their docs, and the
//! middleware every request passes through.

mod check;
mod dead_letters;
mod event_body;
mod events;
mod explorer;
mod health;
mod keys;
mod otlp;
mod paging;
mod prices;
mod reference;
pub mod rules;
mod spec;
mod tenants;
mod usage;
mod usage_stream;
mod voids;

pub(crate) use tenants::AlertKind;
pub(crate) use usage::{BudgetUsage, QuotaUsage};

use std::sync::Arc;

use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route,
    http::{HeaderValue, StatusCode, header},
};
use poem_openapi::{ApiResponse, OpenApiService, Tags, payload::Json, types::ToJSON};

use metrics_exporter_prometheus::PrometheusHandle;
use poem::middleware::{CatchPanic, Tracing};

use crate::{
    auth,
    body_limit::limit_body,
    dashboard,
    error::{ApiError, json_errors, with_retry_after},
    http_metrics,
    state::AppState,
};

/// Groups of routes in the docs.
#[derive(Tags)]
pub(crate) enum ApiTags {
    /// Recording usage events, listing those counted, and the dead letters
    /// of those that could not be.
    Events,
    /// How much of its quota a tenant has used.
    Usage,
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
pub(crate) fn invalid(field: &str, reason: impl std::fmt::Display) -> crate::error::ApiError {
    crate::error::ApiError::bad_request(
        "invalid request",
        serde_json::json!({ "field": field, "reason": reason.to_string() }),
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
/// no CDN), `/metrics`, with JSON errors, bounded request bodies, a tracing
/// span and metrics per request, an `Allow` header on every 405, the
/// configured `Retry-After` on every 503, and a JSON
/// 500 instead of a dropped connection should a handler panic.
pub fn app(state: AppState, max_body_bytes: usize, metrics: PrometheusHandle) -> impl Endpoint {
    let api = openapi(&state);
    let spec = spec::Spec::of(&api);
    let allowed = Arc::new(AllowedMethods::from_spec(spec.json()));
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
        .around(move |next, req| allow_header(next, req, allowed.clone()))
        .around(http_metrics::record)
        .with(CatchPanic::new().with_handler(|_| ApiError::panicked().into_response()))
        .with(Tracing)
        .catch_all_error(json_errors)
}

/// Serves one HTML page.
fn html_page(html: String) -> impl Endpoint {
    poem::endpoint::make_sync(move |_| poem::web::Html(html.clone()))
}

/// The methods each documented path answers, for the `Allow` header that
/// must come with a 405 (RFC 9110).
struct AllowedMethods {
    /// Each path of the spec, split into segments (`None` for a
    /// `{parameter}`), and its `Allow` value.
    paths: Vec<(Vec<Option<String>>, HeaderValue)>,
}

impl AllowedMethods {
    /// Routes outside the spec (the dashboard and its assets, the spec,
    /// the docs, the metrics) answer GET only.
    const UNDOCUMENTED: HeaderValue = HeaderValue::from_static("GET, HEAD");

    fn from_spec(spec: &str) -> Self {
        let spec: serde_json::Value =
            serde_json::from_str(spec).expect("poem-openapi writes its spec as JSON");
        let paths = spec["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(path, operations)| {
                let segments = path
                    .split('/')
                    .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
                    .collect();
                let mut methods: Vec<String> = operations
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(method, _)| method.to_ascii_uppercase())
                    .collect();
                // poem answers HEAD wherever it answers GET.
                if methods.iter().any(|m| m == "GET") {
                    methods.push("HEAD".to_owned());
                }
                methods.sort();
                let allow = HeaderValue::from_str(&methods.join(", "))
                    .expect("method names are valid header text");
                (segments, allow)
            })
            .collect();
        Self { paths }
    }

    /// The `Allow` value for a request path: that of the route the router
    /// picks, which prefers a literal segment to a parameter.
    fn for_path(&self, path: &str) -> HeaderValue {
        let segments: Vec<&str> = path.split('/').collect();
        self.paths
            .iter()
            .filter(|(template, _)| {
                template.len() == segments.len()
                    && template
                        .iter()
                        .zip(&segments)
                        .all(|(t, s)| t.as_deref().is_none_or(|t| t == *s))
            })
            .max_by_key(|(template, _)| template.iter().map(Option::is_some).collect::<Vec<_>>())
            .map_or(Self::UNDOCUMENTED, |(_, allow)| allow.clone())
    }
}

/// Adds `Allow` to a 405 (the router's refusal of a method a path does not
/// answer), in the usual JSON error shape.
async fn allow_header<E: Endpoint>(
    next: E,
    req: Request,
    allowed: Arc<AllowedMethods>,
) -> poem::Result<Response> {
    let path = req.uri().path().to_owned();
    let mut response = match next.call(req).await {
        Ok(response) => response.into_response(),
        Err(err) if err.status() == StatusCode::METHOD_NOT_ALLOWED => json_errors(err).await,
        Err(err) => return Err(err),
    };
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key(header::ALLOW)
    {
        response
            .headers_mut()
            .insert(header::ALLOW, allowed.for_path(&path));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::AllowedMethods;

    #[test]
    fn allow_names_the_methods_of_the_route_the_router_picks() {
        let spec = r#"{"paths": {
            "/api/usage/{tenant}": {"get": {}},
            "/api/usage/stream": {"get": {}},
            "/api/tenants/{tenant}": {"put": {}, "get": {}, "delete": {}},
            "/api/events": {"post": {}}
        }}"#;
        let allowed = AllowedMethods::from_spec(spec);
        let allow = |path| allowed.for_path(path).to_str().unwrap().to_owned();
        assert_eq!(allow("/api/tenants/acme"), "DELETE, GET, HEAD, PUT");
        assert_eq!(allow("/api/events"), "POST");
        assert_eq!(allow("/api/usage/stream"), "GET, HEAD");
        assert_eq!(allow("/metrics"), "GET, HEAD");
    }
}
