//! A bound on request bodies that holds for chunked bodies too.
//!
//! poem's `SizeLimit` only looks at `Content-Length`; a chunked body has
//! none. This middleware refuses a declared length over the limit at once,
//! and reads any other body with the limit enforced while reading, so a
//! client cannot make the service buffer more than the limit.

use poem::{
    Endpoint, IntoResponse, Request, Response, Result, error::ReadBodyError, http::StatusCode,
};

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
    let body = req
        .take_body()
        .into_bytes_limit(limit)
        .await
        .map_err(|err| match err {
            ReadBodyError::PayloadTooLarge => too_large(),
            other => poem::Error::from(other),
        })?;
    req.set_body(body);
    next.call(req).await.map(IntoResponse::into_response)
}
