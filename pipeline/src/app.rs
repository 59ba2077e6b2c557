//! Building and running one pipeline replica from its configuration: the
//! library entry point that `main` and the tests share.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{
    alerts::{
        sender::{Sender, SenderSettings},
        slack::SlackClient,
    },
    config::{AlertArgs, DatabaseArgs, Invalid, SenderArgs, TenantArgs, ValkeyArgs, WorkerArgs},
    consumer::{Consumer, ReadSettings},
    dead_letter, janitor,
    retry::until_done,
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
    #[command(flatten)]
    pub tenants: TenantArgs,
}

impl PipelineConfig {
    /// Refuses settings that can never work, naming the variable.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.valkey.validate()?;
        self.database.validate()?;
        self.worker.validate()?;
        self.alerts.validate()?;
        self.sender.validate()?;
        self.tenants.validate()
    }
}

/// Connects, migrates, joins the consumer group and counts until `shutdown`;
/// alongside, trims the stream and delivers quota alerts.
pub async fn run(config: PipelineConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let db = config
        .database
        .connect_bounded(config.worker.transaction_bounds())
        .await?;
    migration::run(&db).await?;
    let client = redis::Client::open(config.valkey.valkey_url.as_str())?;
    let keys = StreamKeys::new(&config.valkey.stream, &config.valkey.group);
    let worker_args = &config.worker;
    let settings = ReadSettings {
        batch_size: worker_args.batch_size as usize,
        block: Duration::from_millis(worker_args.block_ms),
        claim_idle: Duration::from_millis(worker_args.claim_idle_ms),
    };
    // Until Valkey lets this replica join (it may be loading, full without
    // the group yet, or down): waiting is better than exiting for good.
    let Some(consumer) = until_done("join the consumer group", &shutdown, || {
        Consumer::connect(
            &client,
            keys.clone(),
            worker_args.consumer_name(),
            settings.clone(),
        )
    })
    .await
    else {
        return Ok(());
    };
    match dead_letter::import_legacy(&mut consumer.commands(), &db, &keys).await {
        Ok(0) => {}
        Ok(moved) => tracing::info!(moved, "moved dead letters from Valkey into PostgreSQL"),
        Err(err) => tracing::warn!(%err, "cannot move dead letters from Valkey yet"),
    }
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
                monthly_quota: config.tenants.default_quota,
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
