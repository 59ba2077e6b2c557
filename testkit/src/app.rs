//! `spawn_app`: an api on a free port with its own database and stream,
//! and the set-up requests tests send it (a tenant, an event, a price, an
//! API key), each asserting that the api took it.

use std::time::Duration;

use crate::env::TestEnv;
use api::{
    config::{ApiConfig, AuthArgs},
    startup::Application,
};
use chrono::{DateTime, Utc};
use runtime::config::DatabaseArgs;
use serde_json::{Value, json};
use stream::{EventRecord, config::ValkeyArgs};
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub env: TestEnv,
    pub base: String,
    /// The api's `FLAGMETER_ADMIN_KEY`.
    pub admin_key: String,
    /// Sends `admin_key` with every request.
    pub client: reqwest::Client,
    config: ApiConfig,
    shutdown: CancellationToken,
}

/// An API key created through the api, with a client that sends it.
pub struct Key {
    pub id: String,
    pub secret: String,
    /// Sends `secret` with every request.
    pub client: reqwest::Client,
    /// The api that issued the key.
    base: String,
}

impl Key {
    /// `GET path` on the api that issued the key, with the key.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent")
    }
}

/// Largest body the test apps accept, small enough to test cheaply.
pub const TEST_BODY_LIMIT: usize = 256 * 1024;

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// An app whose database has already counted `events`, as a pipeline
/// replica would, creating the tenants it has not seen with
/// `monthly_quota`.
pub async fn spawn_app_with_usage(events: &[EventRecord], monthly_quota: i64) -> TestApp {
    let app = spawn_app().await;
    app.env.write(events, monthly_quota).await;
    app
}

/// Spawns an app after letting the test adjust its configuration.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut ApiConfig)) -> TestApp {
    let env = TestEnv::new().await;
    let admin_key = format!("test-admin-{}", uuid::Uuid::now_v7().simple());
    let mut config = api_config(env.valkey_args(), env.database_args(), &admin_key);
    adjust(&mut config);
    let admin_key = config.auth.admin_key.clone().unwrap_or_default();
    let shutdown = CancellationToken::new();
    let base = serve(config.clone(), &shutdown).await;
    TestApp {
        env,
        base,
        config,
        client: client_with_key(&admin_key),
        admin_key,
        shutdown,
    }
}

/// An api's configuration for tests, on a free port, with `admin_key` as
/// its `FLAGMETER_ADMIN_KEY` and loopback webhooks allowed: that of
/// [`spawn_app`], and of every api the fault suite starts.
pub fn api_config(valkey: ValkeyArgs, database: DatabaseArgs, admin_key: &str) -> ApiConfig {
    ApiConfig {
        api_addr: "127.0.0.1:0".parse().unwrap(),
        max_body_bytes: TEST_BODY_LIMIT,
        retry_after_secs: 1,
        usage_cache_ms: 250,
        stream_high_water: 1_000_000,
        valkey_min_replicas: 0,
        valkey_wait_ms: 1_000,
        auth: AuthArgs {
            admin_key: Some(admin_key.to_owned()),
            rate_limit_per_sec: 10_000,
            rate_limit_burst: None,
            key_cache_ms: 2_000,
        },
        valkey,
        database,
        alerts: alerts::config::AlertArgs {
            alert_thresholds: vec![80],
            webhook_allowed_hosts: vec!["127.0.0.1:*".into()],
            webhook_allow_insecure: true,
        },
        tenants: Default::default(),
        header_timeout_ms: 10_000,
        money: Default::default(),
        webhook_rotation_grace_secs: 86_400,
        otlp_tenant_attribute: "flagmeter.tenant".into(),
        limits_when_unknown: api::limits::WhenUnknown::Allow,
    }
}

/// An HTTP client that sends `key` as its bearer token with every request.
pub fn client_with_key(key: &str) -> reqwest::Client {
    crate::bearer::client_builder(key).build().unwrap()
}

/// Creates an API key on `app` as `body` says (`POST /api/keys`,
/// asserting 201).
pub async fn create_key(app: &TestApp, body: Value) -> Key {
    let response = app.post("/api/keys", &body).await;
    assert_eq!(response.status().as_u16(), 201);
    let created: Value = response.json().await.expect("a JSON body");
    let secret = created["key"].as_str().expect("the new key").to_owned();
    Key {
        id: created["id"].as_str().expect("the key's id").to_owned(),
        client: client_with_key(&secret),
        secret,
        base: app.base.clone(),
    }
}

/// Builds and runs an api until `shutdown`; returns its base URL.
pub async fn serve(config: ApiConfig, shutdown: &CancellationToken) -> String {
    let app = Application::build(config).await.expect("the api builds");
    let base = format!("http://{}", app.addr());
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    base
}

impl TestApp {
    /// Starts a second api on the same database and stream, as another
    /// replica; it stops with this one. Returns its base URL.
    pub async fn spawn_replica(&self) -> String {
        serve(self.config.clone(), &self.shutdown).await
    }

    /// Sends `method path` with the admin key, and `body` as JSON if given.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let request = self.client.request(method, format!("{}{path}", self.base));
        let request = match body {
            Some(body) => request.json(body),
            None => request,
        };
        request.send().await.expect("request sent")
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.post_as(path, "application/json", body).await
    }

    /// Posts `body` as it is, declared as `content_type`.
    pub async fn post_as(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// Creates or updates `tenant` with the settings in `body`, asserting
    /// success.
    pub async fn put_tenant(&self, tenant: &str, body: Value) {
        let response = self.put(&format!("/api/tenants/{tenant}"), &body).await;
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// Posts one event to `/api/events`, asserting 202; returns the answer.
    pub async fn post_event(&self, event: &Value) -> Value {
        let response = self.post("/api/events", event).await;
        assert_eq!(response.status().as_u16(), 202, "{event}");
        response.json().await.expect("a JSON body")
    }

    /// Adds a price version for `feature`, `input` and `output` per million
    /// tokens from `effective_from`, asserting 201.
    pub async fn set_price(
        &self,
        feature: &str,
        input: &str,
        output: &str,
        effective_from: DateTime<Utc>,
    ) {
        let body = json!({
            "feature": feature,
            "inputPerMillion": input,
            "outputPerMillion": output,
            "effectiveFrom": effective_from.to_rfc3339(),
        });
        let response = self.post("/api/prices", &body).await;
        assert_eq!(response.status().as_u16(), 201, "{body}");
    }

    /// Adds a price version for `feature`, `input` and `output` per million
    /// tokens, in force since 40 days ago: before any current period began.
    pub async fn set_standing_price(&self, feature: &str, input: &str, output: &str) {
        let since = Utc::now() - chrono::Duration::days(40);
        self.set_price(feature, input, output, since).await;
    }

    /// A key with the read scope, restricted to `tenant`.
    pub async fn tenant_reader(&self, tenant: &str) -> Key {
        let body =
            json!({"name": format!("{tenant} reader"), "scopes": ["read"], "tenant": tenant});
        create_key(self, body).await
    }

    /// Polls the tenant's usage until it shows `expected` tokens.
    pub async fn wait_for_total(&self, tenant: &str, expected: i64, timeout: Duration) -> Value {
        let what = format!("{tenant} has {expected} tokens");
        crate::eventually(&what, timeout, || async {
            let (status, body) = self.get_json(&format!("/api/usage/{tenant}")).await;
            if status == 200 && body["totalTokens"] == expected {
                Ok(body)
            } else {
                Err((status, body))
            }
        })
        .await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The `Content-Type` a response says it has.
pub fn content_type(response: &reqwest::Response) -> String {
    response.headers()["content-type"]
        .to_str()
        .expect("a text Content-Type")
        .to_owned()
}

/// Asserts a 4xx JSON error with an `error` message; returns the body.
pub async fn assert_client_error(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let content_type = content_type(&response);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    body
}
