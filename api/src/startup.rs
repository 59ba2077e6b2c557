//! Building the api from its configuration and running it until shutdown.

use anyhow::Context;
use std::{net::SocketAddr, time::Duration};

use poem::{
    Server,
    listener::{Acceptor, Listener, TcpAcceptor, TcpListener},
};
use tokio_util::sync::CancellationToken;

use alerts::slack::SlackClient;
use stream::{ConnectOptions, ensure_group};

use crate::{
    auth::Auth, backlog::Backlog, clock::Clock, config, config::ApiConfig, dashboard::snapshot,
    header_timeout::HeaderTimeout, lag::Lag, routes, state::AppState, usage_cache::UsageCache,
};

/// A built api, bound to its port, ready to serve.
pub struct Application {
    acceptor: TcpAcceptor,
    addr: SocketAddr,
    state: AppState,
    max_body_bytes: usize,
    /// How long a client may take to send a request's headers.
    header_timeout: Duration,
    /// Reads the dashboard's figures while the api runs.
    snapshot_publisher: snapshot::Publisher,
}

impl Application {
    /// Connects to PostgreSQL (applying migrations) and Valkey, and binds
    /// the listen address (port 0 picks a free one).
    ///
    /// Valkey is connected lazily: an api started while Valkey is down serves
    /// reads and answers ingest with 503 until Valkey is back.
    pub async fn build(config: ApiConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let db = config.database.connect().await?;
        migration::run(&db).await?;
        // A reply slower than 5 s counts as Valkey unavailable (503). The
        // default 500 ms fires under CPU starvation on appends that did
        // succeed, and such a 503 cannot tell the client whether its event
        // was stored.
        let mut valkey = config.valkey.target()?.connect_lazy(ConnectOptions {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_millis(config::VALKEY_REPLY_TIMEOUT_MS),
            retries: 1,
        })?;
        let shards = config.valkey.shards();
        for keys in shards.all() {
            if let Err(err) = ensure_group(&mut valkey, keys).await {
                tracing::warn!(%err, stream = %keys.stream, "cannot create the stream yet; ingest answers 503 until Valkey is reachable");
            }
        }
        // Before the first event is stamped: see `clock`.
        let clock = Clock::default();
        clock.sync_once(&mut valkey).await;
        let acceptor = TcpListener::bind(config.api_addr)
            .into_acceptor()
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (FLAGMETER_API_ADDR): is another api running there? \
                     Set FLAGMETER_API_ADDR to a free address",
                    config.api_addr
                )
            })?;
        let addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .ok_or_else(|| anyhow::anyhow!("the listener has no socket address"))?;
        let currency: std::sync::Arc<str> = config.money.currency.as_str().into();
        let (snapshot_publisher, snapshots) = snapshot::channel(currency.clone());
        Ok(Self {
            acceptor,
            addr,
            state: AppState {
                auth: Auth::new(db.clone(), &config.auth),
                db,
                valkey,
                backlog: Backlog::new(shards.len()),
                shards,
                replication: config.replication(),
                retry_after_secs: config.retry_after_secs,
                high_water: config.stream_high_water,
                lag: Lag::default(),
                clock,
                default_quota: config.tenants.default_quota,
                default_thresholds: config.alerts.alert_thresholds.clone(),
                webhook_policy: config.alerts.policy(),
                webhook_rotation_grace: Duration::from_secs(config.webhook_rotation_grace_secs),
                slack: SlackClient::new()?,
                currency,
                usage_cache: UsageCache::new(Duration::from_millis(config.usage_cache_ms)),
                snapshots,
                otlp_tenant_attribute: config.otlp_tenant_attribute.as_str().into(),
            },
            max_body_bytes: config.max_body_bytes,
            header_timeout: Duration::from_millis(config.header_timeout_ms),
            snapshot_publisher,
        })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` is cancelled, then lets requests in flight
    /// finish (up to 10 s).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        tracing::info!(addr = %self.addr, "api listening");
        let sampler = tokio::spawn(self.state.backlog.clone().sample(
            self.state.valkey.clone(),
            self.state.shards.clone(),
            shutdown.clone(),
        ));
        let lag = tokio::spawn(self.state.lag.clone().sample(
            self.state.valkey.clone(),
            self.state.shards.clone(),
            shutdown.clone(),
        ));
        let metrics = runtime::metrics::handle();
        crate::http_metrics::describe(self.state.high_water);
        // After the recorder exists: it reports the offset first.
        let clock = tokio::spawn(
            self.state
                .clock
                .clone()
                .sync(self.state.valkey.clone(), shutdown.clone()),
        );
        let upkeep = tokio::spawn(runtime::metrics::upkeep(metrics.clone(), shutdown.clone()));
        // Stopping it ends every dashboard stream, so that open browsers do
        // not hold the graceful shutdown up.
        let snapshots = tokio::spawn(
            self.snapshot_publisher
                .run(self.state.db.clone(), shutdown.clone()),
        );
        let app = routes::app(self.state, self.max_body_bytes, metrics);
        Server::new_with_acceptor(HeaderTimeout::new(self.acceptor, self.header_timeout))
            .run_with_graceful_shutdown(
                app,
                async move { shutdown.cancelled().await },
                Some(std::time::Duration::from_secs(10)),
            )
            .await?;
        sampler.abort();
        lag.abort();
        clock.abort();
        upkeep.abort();
        snapshots.abort();
        Ok(())
    }
}
