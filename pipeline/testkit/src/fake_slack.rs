//! A local HTTP server playing Slack's incoming webhooks: it records every
//! message and answers from a script (status, optional `Retry-After`), then
//! 200 once the script is used up.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use poem::{
    EndpointExt, Response, Route, Server, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
    web::{Data, Json},
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Inner {
    script: VecDeque<(u16, Option<u64>)>,
    /// Every request: the status answered and the message.
    received: Vec<(u16, Value)>,
}

#[derive(Clone)]
pub struct FakeSlack {
    inner: Arc<Mutex<Inner>>,
    pub url: String,
    stop: CancellationToken,
}

#[handler]
fn hook(Data(inner): Data<&Arc<Mutex<Inner>>>, Json(message): Json<Value>) -> Response {
    let mut inner = inner.lock().unwrap();
    let (status, retry_after) = inner.script.pop_front().unwrap_or((200, None));
    inner.received.push((status, message));
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
            stop,
        }
    }

    /// Every request so far: status answered and message.
    pub fn received(&self) -> Vec<(u16, Value)> {
        self.inner.lock().unwrap().received.clone()
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
