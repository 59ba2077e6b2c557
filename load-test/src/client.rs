//! The HTTP client: one pooled HTTP/1.1 client for the whole run, and how a
//! request's result is classified.

use std::time::Duration;

use anyhow::Context;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};

use crate::traffic::{Format, Kind};

/// Longest a request may take before it counts as a transport error; it
/// bounds how long the end of a run waits for requests in flight.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A pooled client that talks only to the configured URL: no proxies from
/// the environment, the API key (if any) on every request.
pub fn build(connections: u32, api_key: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let mut headers = HeaderMap::new();
    if let Some(key) = api_key {
        let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
            .context("the API key is not a valid header value")?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .pool_max_idle_per_host(connections as usize)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("build the HTTP client")
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer, read to the end.
    Status(u16),
    /// No (complete) answer.
    Transport(TransportError),
}

/// Transport failures, by what the client can tell about them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TransportError {
    /// Could not connect: the request certainly never arrived.
    Connect,
    /// No answer within [`REQUEST_TIMEOUT`].
    Timeout,
    /// Anything else (connection reset, truncated body, ...).
    Other,
}

impl TransportError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Other => "other",
        }
    }

    /// Whether the server may have stored a post that failed this way.
    pub fn maybe_delivered(self) -> bool {
        self != Self::Connect
    }
}

impl Outcome {
    /// Whether this is the answer the request hopes for: 202 for a post;
    /// 200 for a usage read, or 404 for a tenant whose first event has not
    /// been counted yet.
    pub fn is_success(self, kind: Kind) -> bool {
        match (kind, self) {
            (Kind::Post, Self::Status(status)) => status == 202,
            (Kind::Read, Self::Status(status)) => status == 200 || status == 404,
            (_, Self::Transport(_)) => false,
        }
    }
}

/// Sends a post (with a body) or a read (without), and reads the whole
/// answer so that the connection goes back to the pool.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    body: Option<Vec<u8>>,
    format: Format,
) -> Outcome {
    let builder = match body {
        Some(body) => client
            .post(url)
            .header(CONTENT_TYPE, format.content_type())
            .body(body),
        None => client.get(url),
    };
    let result = async {
        let response = builder.send().await?;
        let status = response.status().as_u16();
        response.bytes().await?;
        Ok::<_, reqwest::Error>(status)
    }
    .await;
    match result {
        Ok(status) => Outcome::Status(status),
        Err(err) if err.is_connect() => Outcome::Transport(TransportError::Connect),
        Err(err) if err.is_timeout() => Outcome::Transport(TransportError::Timeout),
        Err(_) => Outcome::Transport(TransportError::Other),
    }
}
