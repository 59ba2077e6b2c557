//! Errors as part of the API: every failure a client can see is a JSON body
//! `{error, details?}` with a status that names the problem.
//!
//! Handlers return [`ApiError`], whose variants appear in the OpenAPI spec;
//! routes that read a body return [`BodyError`], which also lists the
//! refusals of the body itself (413, 415). Errors raised by the framework
//! itself (a body that is not JSON, a missing field, an unknown route, a
//! body too large) are turned into the same JSON shape by [`json_errors`]
//! (a refused parameter is named by `routes::operations`).
//! Unexpected failures (and panics) are logged with their cause and answered
//! with an opaque 500. Every 503 tells the client to retry after the app's
//! `FLAGMETER_RETRY_AFTER_SECS`, which [`with_retry_after`] makes known to
//! the request, wherever in it the 503 is made (a `?` on a database error
//! included).

use domain::validate::Invalid;
use poem::{Endpoint, IntoResponse, Request, Response, http::StatusCode};
use poem_openapi::{
    ApiResponse, Object,
    payload::Json,
    registry::{MetaResponses, Registry},
};
use sea_orm::DbErr;

tokio::task_local! {
    /// The `Retry-After` of a 503 answered by the request being served: the
    /// serving app's `FLAGMETER_RETRY_AFTER_SECS` (apps with different
    /// settings may share a process, as tests do).
    static RETRY_AFTER_SECS: u64;
}

/// `FLAGMETER_RETRY_AFTER_SECS` when it is not set.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 1;

/// Serves a request with `retry_after_secs` as the `Retry-After` of any 503
/// it answers.
pub async fn with_retry_after<E: Endpoint>(
    next: E,
    req: Request,
    retry_after_secs: u64,
) -> poem::Result<Response> {
    RETRY_AFTER_SECS
        .scope(retry_after_secs, next.call(req))
        .await
        .map(IntoResponse::into_response)
}

/// The `WWW-Authenticate` challenge of a 401.
const BEARER_CHALLENGE: &str = "Bearer realm=\"flagmeter\"";

/// The body of every error response.
#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    /// What went wrong, in a few words.
    pub error: String,
    /// Specifics: which field, and why.
    #[oai(skip_serializing_if_is_none)]
    pub details: Option<ErrorDetails>,
}

/// Which field of a request was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct ErrorDetails {
    /// The field at fault, as the request spells it: a body field (a path
    /// such as `a.b` when nested), or a path or query parameter.
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
    /// In a list (a batch's `events` or `voids`, a key's `scopes`), the
    /// position of the item at fault, from 0.
    #[oai(skip_serializing_if_is_none)]
    pub index: Option<u32>,
    /// Why, in plain words.
    pub reason: String,
}

impl ErrorDetails {
    /// `field` is at fault because `reason`.
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            index: None,
            reason: reason.into(),
        }
    }

    /// The request is at fault, as a whole, because `reason`.
    pub fn reason(reason: impl Into<String>) -> Self {
        Self {
            field: None,
            index: None,
            reason: reason.into(),
        }
    }
}

impl ErrorBody {
    pub fn new(error: impl Into<String>, details: Option<ErrorDetails>) -> Json<Self> {
        Json(Self {
            error: error.into(),
            details,
        })
    }
}

/// Every error a route can answer with.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request broke a rule; `details` says which and why.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No API key, or a key that is unknown, revoked or expired (error
    /// `expired`).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// The key lacks the scope, or is restricted to another tenant.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such tenant (or key).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The key is over its rate limit. Retry after the number of seconds
    /// in `Retry-After`.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// Something unexpected failed; it has been logged.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// A dependency is unavailable; nothing was stored. Retry after the
    /// number of seconds in `Retry-After` (`FLAGMETER_RETRY_AFTER_SECS`).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
}

impl ApiError {
    pub fn bad_request(error: &str, details: ErrorDetails) -> Self {
        Self::BadRequest(ErrorBody::new(error, Some(details)))
    }

    pub fn unauthorized() -> Self {
        Self::Unauthorized(
            ErrorBody::new(
                "missing, unknown or revoked API key",
                Some(ErrorDetails::field(
                    "Authorization",
                    "must be `Bearer <key>` with a key that is known and not revoked",
                )),
            ),
            BEARER_CHALLENGE.to_owned(),
        )
    }

    /// The 401 of a key past its `expiresAt`.
    pub fn expired_key(at: chrono::DateTime<chrono::Utc>) -> Self {
        Self::Unauthorized(
            ErrorBody::new(
                "expired",
                Some(ErrorDetails::reason(format!(
                    "the API key expired at {}",
                    at.to_rfc3339()
                ))),
            ),
            BEARER_CHALLENGE.to_owned(),
        )
    }

    pub fn forbidden(error: &str, details: ErrorDetails) -> Self {
        Self::Forbidden(ErrorBody::new(error, Some(details)))
    }

    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self::TooManyRequests(
            ErrorBody::new(
                "rate limit exceeded",
                Some(ErrorDetails::reason(format!(
                    "the key made too many requests: retry in {retry_after_secs} s"
                ))),
            ),
            retry_after_secs,
        )
    }

    /// The 400 for a stream item (`what`: `event`, `void`) that broke a
    /// domain rule, naming the field; in a batch, also its `index`.
    pub fn invalid_item(what: &str, index: Option<usize>, invalid: &Invalid) -> Self {
        let details = ErrorDetails {
            index: index.map(|i| i as u32),
            ..ErrorDetails::field(invalid.field, &invalid.reason)
        };
        match index {
            None => Self::bad_request(&format!("invalid {what}"), details),
            Some(_) => Self::bad_request(&format!("invalid {what} in batch"), details),
        }
    }

    pub fn unknown_tenant(tenant: &str) -> Self {
        Self::NotFound(ErrorBody::new(
            "unknown tenant",
            Some(ErrorDetails::field(
                "tenant",
                format!("names no tenant: {tenant}"),
            )),
        ))
    }

    /// A 503 saying what is unavailable. Outside a request (never, for the
    /// api's routes) it says the default `Retry-After`.
    pub fn unavailable(what: &str) -> Self {
        let retry_after_secs = RETRY_AFTER_SECS
            .try_with(|secs| *secs)
            .unwrap_or(DEFAULT_RETRY_AFTER_SECS);
        Self::Unavailable(ErrorBody::new(what, None), retry_after_secs)
    }

    /// Logs an unexpected failure with its cause chain; the client only
    /// learns that it happened.
    pub fn internal(err: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %err, source = ?err.source(), "request failed unexpectedly");
        Self::Internal(ErrorBody::new("internal error", None))
    }

    /// The answer when a handler panicked (the panic hook has logged where).
    pub fn panicked() -> Self {
        tracing::error!("a request handler panicked");
        Self::Internal(ErrorBody::new("internal error", None))
    }
}

/// Refusals of a request body, before any handler runs: by the body limit
/// ([`crate::body_limit`]) and by the framework.
#[derive(Debug, ApiResponse)]
pub enum BodyRefused {
    /// The body did not arrive in time (30 s).
    #[oai(status = 408)]
    Timeout(Json<ErrorBody>),
    /// The body is larger than `FLAGMETER_MAX_BODY_BYTES`.
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// The body is missing, or neither JSON nor MessagePack (see
    /// `Content-Type`).
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
}

/// The errors of a route that reads a JSON body: those of [`ApiError`] and
/// those of [`BodyRefused`].
#[derive(Debug)]
pub struct BodyError(pub ApiError);

impl From<ApiError> for BodyError {
    fn from(err: ApiError) -> Self {
        Self(err)
    }
}

impl From<DbErr> for BodyError {
    fn from(err: DbErr) -> Self {
        Self(err.into())
    }
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl From<BodyError> for poem::Error {
    fn from(err: BodyError) -> Self {
        err.0.into()
    }
}

impl ApiResponse for BodyError {
    fn meta() -> MetaResponses {
        let mut responses = ApiError::meta().responses;
        responses.extend(BodyRefused::meta().responses);
        responses.sort_by_key(|response| response.status);
        MetaResponses { responses }
    }

    fn register(registry: &mut Registry) {
        ApiError::register(registry);
        BodyRefused::register(registry);
    }
}

impl From<DbErr> for ApiError {
    fn from(err: DbErr) -> Self {
        match err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
                tracing::warn!(error = %err, "database unavailable");
                Self::unavailable("database unavailable")
            }
            err => Self::internal(&err),
        }
    }
}

/// Turns a framework error into the JSON error shape; responses the handlers
/// built themselves pass through untouched.
pub async fn json_errors(err: poem::Error) -> Response {
    if err.is_from_response() {
        return err.into_response();
    }
    let status = err.status();
    if status == StatusCode::UNAUTHORIZED {
        // The framework found no `Authorization: Bearer` header at all.
        return ApiError::unauthorized().into_response();
    }
    let details = || Some(ErrorDetails::reason(err.to_string()));
    let error = match status {
        StatusCode::BAD_REQUEST => "invalid request",
        StatusCode::NOT_FOUND => "not found",
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed",
        StatusCode::REQUEST_TIMEOUT => {
            let body = ErrorBody::new("request body too slow", details());
            return BodyRefused::Timeout(body).into_response();
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            let body = ErrorBody::new("request body too large", details());
            return BodyRefused::TooLarge(body).into_response();
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            let body = ErrorBody::new("unsupported content type", details());
            return BodyRefused::UnsupportedMediaType(body).into_response();
        }
        s if s.is_server_error() => {
            tracing::error!(error = %err, "request failed unexpectedly");
            return (
                status,
                poem::web::Json(serde_json::json!({ "error": "internal error" })),
            )
                .into_response();
        }
        _ => status.canonical_reason().unwrap_or("request refused"),
    };
    (status, ErrorBody::new(error, details())).into_response()
}

#[cfg(test)]
mod tests {
    use poem_openapi::types::ToJSON;
    use serde_json::json;

    use super::*;

    #[test]
    fn an_invalid_item_names_its_field_and_in_a_batch_its_index() {
        let invalid = Invalid::new("id", "must not be empty");
        let body = |err| match err {
            ApiError::BadRequest(body) => body.0.to_json(),
            _ => None,
        };
        assert_eq!(
            body(ApiError::invalid_item("void", None, &invalid)),
            Some(json!({"error": "invalid void",
                        "details": {"field": "id", "reason": "must not be empty"}}))
        );
        assert_eq!(
            body(ApiError::invalid_item("void", Some(3), &invalid)),
            Some(json!({"error": "invalid void in batch",
                        "details": {"index": 3, "field": "id", "reason": "must not be empty"}}))
        );
    }
}
