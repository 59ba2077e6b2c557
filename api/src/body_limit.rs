//! A bound on request bodies that holds for chunked bodies too, and on the
//! time they take to arrive.
//!
//! poem's `SizeLimit` only looks at `Content-Length`; a chunked body has
//! none. This middleware refuses a declared length over the limit at once,
//! and reads any other body with the limit enforced while reading, so a
//! client cannot make the service buffer more than the limit; a body that
//! has not fully arrived after [`BODY_TIMEOUT`] is a 408, so a client cannot
//! hold a request open by sending its body slowly, or never.

use std::time::Duration;

use poem::{
    Endpoint, IntoResponse, Request, Response, Result, error::ReadBodyError, http::StatusCode,
};

/// Longest a request body may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the body under `limit` bytes, then passes the request on.
pub async fn limit_body<E: Endpoint>(next: E, mut req: Request, limit: usize) -> Result<Response> {
    let too_large = || {
        poem::Error::from_string(
            format!("request body exceeds {limit} bytes"),
            StatusCode::PAYLOAD_TOO_LARGE,
        )
    };
    let declared = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let read = req.take_body().into_bytes_limit(limit);
    let body = tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .map_err(|_| {
            poem::Error::from_string(
                format!(
                    "the body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
                StatusCode::REQUEST_TIMEOUT,
            )
        })?
        .map_err(|err| match err {
            ReadBodyError::PayloadTooLarge => too_large(),
            other => poem::Error::from(other),
        })?;
    req.set_body(body);
    next.call(req).await.map(IntoResponse::into_response)
}
