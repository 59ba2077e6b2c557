//! One pipeline replica, built from its configuration and then run until
//! shutdown: the library entry point that `main` and the tests share, in the
//! api's shape ([`Pipeline::build`], then [`Pipeline::run_until_stopped`]).

use std::{net::SocketAddr, time::Duration};

use alerts::{
    config::{AlertArgs, SenderArgs},
    sender::{Sender, SenderSettings},
    slack::SlackClient,
};
use sea_orm::DatabaseConnection;
use service::config::DatabaseArgs;
use stream::config::ValkeyArgs;
use tokio_util::sync::CancellationToken;

use crate::{
    config::WorkerArgs,
    consumer::{Consumer, ReadSettings},
    janitor,
    worker::{Worker, WorkerSettings},
    writer::NewTenants,
};

/// Everything one replica needs.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineConfig {
    /// Where Prometheus scrapes this replica's metrics.
    #[arg(long, env = "FLAGMETER_METRICS_ADDR", default_value = "127.0.0.1:9465")]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub valkey: ValkeyArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub alerts: AlertArgs,
    #[command(flatten)]
    pub sender: SenderArgs,
}

/// A replica that has connected, migrated and joined the consumer group.
pub struct Pipeline {
    db: DatabaseConnection,
    worker: Worker,
    janitor: janitor::Janitor,
    sender: Sender,
    /// Renders this replica's metrics; kept tidy while the replica runs.
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl Pipeline {
    /// Connects to PostgreSQL (applying migrations) and Valkey, joins the
    /// consumer group (creating it if need be) and serves the metrics
    /// endpoint, if one is configured.
    pub async fn build(config: PipelineConfig) -> anyhow::Result<Self> {
        let metrics = match config.metrics_addr {
            Some(addr) => service::metrics::serve(addr)?,
            None => service::metrics::handle(),
        };
        crate::metrics::describe_pipeline();
        let db = config.database.connect().await?;
        migration::run(&db).await?;
        let client = redis::Client::open(config.valkey.valkey_url.as_str())?;
        let worker_args = &config.worker;
        let claim_idle = Duration::from_millis(worker_args.claim_idle_ms);
        let settings = ReadSettings {
            batch_size: worker_args.batch_size as usize,
            block: Duration::from_millis(worker_args.block_ms),
            claim_idle,
        };
        let consumer = Consumer::connect(
            &client,
            config.valkey.keys(),
            worker_args.consumer_name(),
            settings,
        )
        .await?;
        let janitor = janitor::Janitor {
            valkey: consumer.commands(),
            db: db.clone(),
            keys: config.valkey.keys(),
            trim_interval: Duration::from_millis(worker_args.trim_interval_ms),
            retention_days: worker_args.event_retention_days,
        };
        let sender_args = &config.sender;
        let sender = Sender::new(
            db.clone(),
            SlackClient::new()?,
            SenderSettings {
                policy: config.alerts.policy(),
                retry_base: Duration::from_millis(sender_args.alert_retry_base_ms),
                retry_max: Duration::from_millis(sender_args.alert_retry_max_ms),
                give_up_after: Duration::from_secs(sender_args.alert_give_up_secs),
                poll: Duration::from_millis(sender_args.alert_poll_ms),
            },
        );
        let worker = Worker::new(
            consumer,
            db.clone(),
            WorkerSettings {
                new_tenants: NewTenants {
                    monthly_quota: worker_args.default_quota,
                    alert_thresholds: config.alerts.alert_thresholds.clone(),
                },
                claim_interval: Duration::from_millis(worker_args.claim_interval_ms),
                max_deliveries: worker_args.max_deliveries,
                keep_fresh_after: claim_idle / 3,
                failpoint: worker_args.failpoint,
            },
        );
        Ok(Self {
            db,
            worker,
            janitor,
            sender,
            metrics,
        })
    }

    /// Counts until `shutdown` is cancelled; alongside, trims the stream,
    /// delivers quota alerts and keeps the metrics tidy. Returns once the
    /// batch in hand is finished.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let upkeep = tokio::spawn(service::metrics::upkeep(self.metrics, shutdown.clone()));
        let janitor = tokio::spawn(self.janitor.run(shutdown.clone()));
        let sender = tokio::spawn(self.sender.run(shutdown.clone()));
        self.worker.run(shutdown).await;
        janitor.await?;
        sender.await?;
        upkeep.await?;
        self.db.close().await?;
        Ok(())
    }
}
