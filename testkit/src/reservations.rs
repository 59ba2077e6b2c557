//! Reservations as a client makes them (`POST /api/reservations`), for
//! the api's tests and the fault suite alike: the status, the body and
//! `Retry-After` of each answer.

use serde_json::Value;

/// `POST /api/reservations` to the api at `base`: status, body (`Null`
/// if it is not JSON), and `Retry-After` if any.
pub async fn reserve(
    client: &reqwest::Client,
    base: &str,
    body: &Value,
) -> (u16, Value, Option<u64>) {
    let response = client
        .post(format!("{base}/api/reservations"))
        .json(body)
        .send()
        .await
        .expect("the api answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        retry_after,
    )
}
