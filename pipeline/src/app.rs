//! One pipeline replica, built from its configuration and then run until
//! shutdown: the library entry point that `main` and the tests share, in the
//! api's shape ([`Pipeline::build`], then [`Pipeline::run_until_stopped`]).
//!
//! Building refuses settings that can never work, naming the variable, and
//! connects to PostgreSQL. Joining the consumer group waits, retrying, for
//! as long as Valkey does not let the replica in (loading, full before the
//! group exists, down): exiting would leave the events uncounted for good.
//!
//! Stopping is bounded: once shutdown is requested, the workers finish the
//! batches in hand, the sender its delivery, within [`SHUTDOWN_GRACE`];
//! whatever is still running then (a commit waiting on a connection gone
//! silent, say) is abandoned. That is safe: entries are acknowledged only
//! after COMMIT, so an abandoned batch stays pending and is counted by
//! another replica, or by this one restarted.

use std::{net::SocketAddr, num::NonZeroUsize, time::Duration};

use alerts::{
    config::{AlertArgs, SenderArgs},
    sender::{Sender, SenderSettings},
    slack::SlackClient,
};
use domain::setting::InvalidSetting;
use metrics_exporter_prometheus::PrometheusHandle;
use runtime::config::{CurrencyArgs, DatabaseArgs, TenantArgs};
use sea_orm::DatabaseConnection;
use store::dead_letter;
use stream::{Target, config::ValkeyArgs};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    config::WorkerArgs,
    consumer::{Consumer, ReadSettings},
    janitor,
    liveness::Progress,
    retry::until_done,
    worker::{Worker, WorkerSettings},
    writer::NewTenants,
};

/// How long a stopping replica lets its steps in flight finish before it
/// abandons them: well inside the 10 s Docker and Kubernetes wait before
/// they kill a process.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
    #[command(flatten)]
    pub tenants: TenantArgs,
    #[command(flatten)]
    pub money: CurrencyArgs,
}

impl PipelineConfig {
    /// Refuses settings that can never work, naming the variable.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.valkey.validate()?;
        self.database.validate()?;
        self.worker.validate()?;
        self.alerts.validate()?;
        self.sender.validate()?;
        self.money.validate()?;
        self.tenants.validate()
    }
}

/// A replica that has connected to PostgreSQL and applied the migrations.
pub struct Pipeline {
    config: PipelineConfig,
    db: DatabaseConnection,
    valkey: Target,
    /// Renders this replica's metrics; kept tidy while the replica runs.
    metrics: PrometheusHandle,
    /// Posts the alerts.
    slack: SlackClient,
}

impl Pipeline {
    /// Checks the settings, connects to PostgreSQL (every session's
    /// transactions bounded, see [`WorkerArgs::transaction_bounds`]),
    /// applies the migrations and serves the metrics endpoint, if one is
    /// configured.
    pub async fn build(config: PipelineConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let metrics = match config.metrics_addr {
            Some(addr) => runtime::metrics::serve(addr).await,
            None => runtime::metrics::handle(),
        };
        crate::metrics::describe_pipeline(Duration::from_millis(config.worker.claim_idle_ms));
        let db = config
            .database
            .connect_bounded(config.worker.transaction_bounds())
            .await?;
        migration::run(&db).await?;
        let valkey = config.valkey.target()?;
        Ok(Self {
            config,
            db,
            valkey,
            metrics,
            slack: SlackClient::new()?,
        })
    }

    /// Joins every shard's consumer group (creating it if need be), then
    /// counts, one worker a shard, until `shutdown` is cancelled; alongside,
    /// trims the shards, delivers quota alerts and keeps the metrics tidy.
    /// Returns once the batches in hand are finished, or abandoned after
    /// [`SHUTDOWN_GRACE`].
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let db = self.db.clone();
        let mut tasks = JoinSet::new();
        let grace = grace_after(&shutdown);
        tokio::pin!(grace);
        let started = tokio::select! {
            () = self.run(&mut tasks, shutdown.clone()) => true,
            () = &mut grace => false,
        };
        let finished = started
            && tokio::select! {
                () = finish(&mut tasks) => true,
                () = &mut grace => false,
            };
        if !finished {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "abandoning the steps still in flight at shutdown; their entries stay pending");
            tasks.shutdown().await;
        }
        // Closing waits for every connection to come back: not for one
        // that a silent server holds.
        if tokio::time::timeout(Duration::from_secs(1), db.close())
            .await
            .is_err()
        {
            tracing::warn!("PostgreSQL connections still busy at exit; dropping them");
        }
        Ok(())
    }

    /// Joins the groups and starts every task of the replica in `tasks`.
    async fn run(self, tasks: &mut JoinSet<()>, shutdown: CancellationToken) {
        let Self {
            config,
            db,
            valkey,
            metrics,
            slack,
        } = self;
        tasks.spawn(runtime::metrics::upkeep(metrics, shutdown.clone()));
        let worker_args = &config.worker;
        let claim_idle = Duration::from_millis(worker_args.claim_idle_ms);
        let settings = ReadSettings {
            batch_size: worker_args.batch_size as usize,
            block: Duration::from_millis(worker_args.block_ms),
            claim_idle,
        };
        let shards = config.valkey.shards();
        // From now on: a replica that cannot join its groups is stalled too.
        let progress: Vec<Progress> = (0..shards.len()).map(Progress::of_shard).collect();
        let consumer_name = worker_args.consumer_name();
        let db_bounds = worker_args.transaction_bounds();
        let mut consumers = Vec::with_capacity(shards.len());
        for keys in shards.all() {
            let Ok(consumer) = until_done("join the consumer group", &shutdown, || {
                Consumer::connect(
                    valkey.clone(),
                    keys.clone(),
                    consumer_name.clone(),
                    settings.clone(),
                )
            })
            .await
            else {
                return;
            };
            let mut commands = consumer.commands();
            let import = dead_letter::import_legacy(&mut commands, &db, keys);
            match tokio::time::timeout(db_bounds.reply, import).await {
                Ok(Ok(0)) => {}
                Ok(Ok(moved)) => {
                    tracing::info!(moved, "moved dead letters from Valkey into PostgreSQL");
                }
                Ok(Err(err)) => tracing::warn!(%err, "cannot move dead letters from Valkey yet"),
                Err(_) => tracing::warn!("cannot move dead letters from Valkey yet: no answer"),
            }
            consumers.push(consumer);
        }
        let janitor = janitor::Janitor {
            // There is always one shard at least.
            valkey: consumers[0].commands(),
            db: db.clone(),
            shards,
            trim_interval: Duration::from_millis(worker_args.trim_interval_ms),
            retention_days: worker_args.event_retention_days,
            stale_consumer_idle: Duration::from_secs(worker_args.stale_consumer_secs),
        };
        let sender_args = &config.sender;
        let sender = Sender::new(
            db.clone(),
            slack,
            SenderSettings {
                policy: config.alerts.policy(),
                retry_base: Duration::from_millis(sender_args.alert_retry_base_ms),
                retry_max: Duration::from_millis(sender_args.alert_retry_max_ms),
                give_up_after: Duration::from_secs(sender_args.alert_give_up_secs),
                poll: Duration::from_millis(sender_args.alert_poll_ms),
                currency: config.money.currency.clone(),
                in_flight: deliveries_in_flight(config.database.db_max_connections),
            },
        );
        let worker_settings = WorkerSettings {
            new_tenants: NewTenants {
                monthly_quota: config.tenants.default_quota,
                alert_thresholds: config.alerts.alert_thresholds.clone(),
            },
            claim_interval: Duration::from_millis(worker_args.claim_interval_ms),
            max_deliveries: worker_args.max_deliveries,
            keep_fresh_after: claim_idle / 3,
            db_bounds,
            failpoint: worker_args.failpoint,
        };
        let alerts_due = sender.alerts_due();
        tasks.spawn(janitor.run(shutdown.clone()));
        tasks.spawn(sender.run(shutdown.clone()));
        for (consumer, progress) in consumers.into_iter().zip(progress) {
            let worker = Worker::new(
                consumer,
                db.clone(),
                worker_settings.clone(),
                alerts_due.clone(),
                progress,
            );
            tasks.spawn(worker.run(shutdown.clone()));
        }
    }
}

/// Waits for every task; one that panicked is logged (the others go on).
async fn finish(tasks: &mut JoinSet<()>) {
    while let Some(ended) = tasks.join_next().await {
        if let Err(err) = ended {
            tracing::error!(%err, "a pipeline task failed");
        }
    }
}

/// Resolves [`SHUTDOWN_GRACE`] after shutdown was requested.
async fn grace_after(shutdown: &CancellationToken) {
    shutdown.cancelled().await;
    tokio::time::sleep(SHUTDOWN_GRACE).await;
}

/// How many alert deliveries a replica makes at once: half its pool, at
/// least one. Each holds a connection while its destination answers (up to
/// the client's 10 s), and counting keeps the other half.
fn deliveries_in_flight(pool: u32) -> NonZeroUsize {
    NonZeroUsize::new(pool as usize / 2).unwrap_or(NonZeroUsize::MIN)
}
