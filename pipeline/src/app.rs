//! Building and running one pipeline replica from its configuration: the
//! library entry point that `main` and the tests share.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{
    alerts::{
        sender::{Sender, SenderSettings},
        slack::SlackClient,
    },
    config::{AlertArgs, DatabaseArgs, SenderArgs, ValkeyArgs, WorkerArgs},
    consumer::{Consumer, ReadSettings},
    janitor,
    stream::StreamKeys,
    worker::{Worker, WorkerSettings},
    writer::NewTenants,
};

/// Everything one replica needs.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineConfig {
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

/// Connects, migrates, joins the consumer group and counts until `shutdown`;
/// alongside, trims the stream and delivers quota alerts.
pub async fn run(config: PipelineConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let db = config.database.connect().await?;
    migration::run(&db).await?;
    let client = redis::Client::open(config.valkey.valkey_url.as_str())?;
    let keys = StreamKeys::new(&config.valkey.stream, &config.valkey.group);
    let worker_args = &config.worker;
    let settings = ReadSettings {
        batch_size: worker_args.batch_size as usize,
        block: Duration::from_millis(worker_args.block_ms),
        claim_idle: Duration::from_millis(worker_args.claim_idle_ms),
    };
    let consumer =
        Consumer::connect(&client, keys.clone(), worker_args.consumer_name(), settings).await?;
    let janitor = tokio::spawn(janitor::run(
        consumer.commands(),
        db.clone(),
        keys,
        Duration::from_millis(worker_args.trim_interval_ms),
        worker_args.event_retention_days,
        shutdown.clone(),
    ));
    let sender_args = &config.sender;
    let sender = tokio::spawn(
        Sender::new(
            db.clone(),
            SlackClient::new()?,
            SenderSettings {
                policy: config.alerts.policy(),
                retry_base: Duration::from_millis(sender_args.alert_retry_base_ms),
                retry_max: Duration::from_millis(sender_args.alert_retry_max_ms),
                give_up_after: Duration::from_secs(sender_args.alert_give_up_secs),
                poll: Duration::from_millis(sender_args.alert_poll_ms),
            },
        )
        .run(shutdown.clone()),
    );
    let claim_idle = Duration::from_millis(worker_args.claim_idle_ms);
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
    worker.run(shutdown).await;
    janitor.await?;
    sender.await?;
    db.close().await?;
    Ok(())
}
