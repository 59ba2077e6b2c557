//! A local HTTP server playing Slack's incoming webhooks, or a tenant's
//! signed webhook: it records every message with its headers and answers
//! from a script (status, optional `Retry-After`), then 200 once the script
//! is used up. As a signed webhook's receiver it verifies each delivery the
//! way docs/api.md tells receivers to ([`Received::signed_by`]), with its own
//! HMAC, not FlagMeter's.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use poem::{
    EndpointExt, Request, Response, Route, Server, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
    web::Data,
};
use serde_json::Value;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Inner {
    script: VecDeque<(u16, Option<u64>)>,
    /// Every request: the status answered, the headers and the body.
    received: Vec<Received>,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request arrived, for latency measurements (the alert-latency
    /// benchmark times crossing event → delivery with it).
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON message")
    }

    /// Whether the Standard Webhooks signature is right for `secret`
    /// (`whsec_<base64>`) and the timestamp within five minutes of now.
    pub fn signed_by(&self, secret: &str) -> bool {
        let (Some(id), Some(timestamp), Some(signatures)) = (
            self.header("webhook-id"),
            self.header("webhook-timestamp"),
            self.header("webhook-signature"),
        ) else {
            return false;
        };
        let fresh = timestamp
            .parse::<i64>()
            .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() <= 300);
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap_or_default())
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(&self.body);
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        fresh && signatures.split(' ').any(|s| s == expected)
    }
}

#[derive(Clone)]
pub struct FakeSlack {
    inner: Arc<Mutex<Inner>>,
    /// A Slack-shaped URL (`/services/...`).
    pub url: String,
    /// A URL for a tenant's own webhook (`/hooks/...`).
    pub webhook_url: String,
    stop: CancellationToken,
}

#[handler]
fn hook(req: &Request, Data(inner): Data<&Arc<Mutex<Inner>>>, body: Vec<u8>) -> Response {
    let mut inner = inner.lock().unwrap();
    let (status, retry_after) = inner.script.pop_front().unwrap_or((200, None));
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    inner.received.push(Received {
        status,
        headers,
        body,
        at: std::time::Instant::now(),
    });
    let mut response = Response::builder().status(StatusCode::from_u16(status).unwrap());
    if let Some(seconds) = retry_after {
        response = response.header("retry-after", seconds.to_string());
    }
    response.body(if status == 200 { "ok" } else { "error" })
}

impl FakeSlack {
    pub async fn start(script: &[(u16, Option<u64>)]) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            script: script.iter().copied().collect(),
            received: Vec::new(),
        }));
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
        let stop = CancellationToken::new();
        let app = Route::new()
            .at("/services/*rest", poem::post(hook))
            .at("/hooks/*rest", poem::post(hook))
            .data(inner.clone());
        let until = stop.clone();
        tokio::spawn(async move {
            Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(app, async move { until.cancelled().await }, None)
                .await
        });
        Self {
            inner,
            url: format!("http://{addr}/services/T000/B000/secret"),
            webhook_url: format!("http://{addr}/hooks/flagmeter"),
            stop,
        }
    }

    /// Every request so far: status answered and message.
    pub fn received(&self) -> Vec<(u16, Value)> {
        self.requests()
            .iter()
            .map(|r| (r.status, r.json()))
            .collect()
    }

    /// Every request so far, as received.
    pub fn requests(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Polls until exactly `n` requests have arrived; returns them.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let what = format!("{n} requests arrived");
        crate::eventually(&what, timeout, || async {
            let requests = self.requests();
            if requests.len() == n {
                Ok(requests)
            } else {
                Err(requests.len())
            }
        })
        .await
    }

    /// The messages answered with 200.
    pub fn delivered(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|(s, _)| *s == 200)
            .map(|(_, m)| m)
            .collect()
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
