//! Configuration shared by both binaries: where Valkey and PostgreSQL are,
//! which stream and group to use, and the log format. Each field is an
//! environment variable and a `--flag`. Nothing here is ever printed whole:
//! the URLs may carry passwords.

use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

/// Valkey and the stream contract.
#[derive(Debug, Clone, clap::Args)]
pub struct ValkeyArgs {
    /// Valkey (or Redis 7) URL.
    #[arg(long, env = "VALKEY_URL", default_value = "redis://127.0.0.1:6379")]
    pub valkey_url: String,
    /// Stream key; `{stream}:dead` is its dead-letter stream.
    #[arg(long, env = "FLAGMETER_STREAM", default_value = "flagmeter:events")]
    pub stream: String,
    /// Consumer group the pipeline workers share.
    #[arg(long, env = "FLAGMETER_GROUP", default_value = "rollups")]
    pub group: String,
}

/// PostgreSQL.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/flagmeter"
    )]
    pub database_url: String,
    /// Largest number of pooled PostgreSQL connections.
    #[arg(long, env = "FLAGMETER_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
}

impl DatabaseArgs {
    /// Opens the connection pool (without logging every statement).
    pub async fn connect(&self) -> Result<DatabaseConnection, DbErr> {
        let mut options = ConnectOptions::new(self.database_url.clone());
        options
            .max_connections(self.db_max_connections)
            .min_connections(1)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(5))
            .sqlx_logging(false);
        Database::connect(options).await
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    Pretty,
    /// One JSON object per line, for production.
    Json,
}

/// Logging; the level comes from `RUST_LOG` (default `info`).
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(
        long,
        env = "FLAGMETER_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
}

/// The pipeline worker.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Consumer name, unique per replica (default: hostname-pid).
    #[arg(long, env = "FLAGMETER_CONSUMER")]
    pub consumer: Option<String>,
    /// Most entries read and committed as one batch.
    #[arg(long, env = "FLAGMETER_BATCH_SIZE", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// How long one read waits for new entries, in milliseconds.
    #[arg(long, env = "FLAGMETER_BLOCK_MS", default_value_t = 1000)]
    pub block_ms: u64,
    /// How long an entry must be pending on a silent replica before another
    /// takes it over, in milliseconds. Must exceed the longest two batches
    /// (each is read while the one before it commits).
    #[arg(long, env = "FLAGMETER_CLAIM_IDLE_MS", default_value_t = 30_000)]
    pub claim_idle_ms: u64,
    /// How often this replica looks for entries to take over, in milliseconds.
    #[arg(long, env = "FLAGMETER_CLAIM_INTERVAL_MS", default_value_t = 5_000)]
    pub claim_interval_ms: u64,
    /// An entry delivered more often than this without being committed (it
    /// crashed every worker that took it) goes to the dead-letter stream.
    #[arg(long, env = "FLAGMETER_MAX_DELIVERIES", default_value_t = 5)]
    pub max_deliveries: usize,
    /// Days a ledger row (the dedupe window) is kept after receipt; at least
    /// the 35-day backdating window.
    #[arg(long, env = "FLAGMETER_EVENT_RETENTION_DAYS", default_value_t = 35,
          value_parser = clap::value_parser!(u32).range(35..))]
    pub event_retention_days: u32,
    /// How often acknowledged history is trimmed from the stream (and the
    /// backlog gauges sampled), in milliseconds.
    #[arg(long, env = "FLAGMETER_TRIM_INTERVAL_MS", default_value_t = 5_000)]
    pub trim_interval_ms: u64,
    /// A deliberate crash, for fault-injection tests only.
    #[arg(long, env = "FLAGMETER_FAILPOINT", value_enum, hide = true)]
    pub failpoint: Option<crate::worker::Failpoint>,
    /// Monthly quota given to a tenant created by its first event.
    #[arg(long, env = "FLAGMETER_DEFAULT_QUOTA", default_value_t = entity::DEFAULT_MONTHLY_QUOTA)]
    pub default_quota: i64,
}

impl WorkerArgs {
    /// The consumer name: the configured one, else `hostname-pid`, which is
    /// unique per process and so never reuses a dead replica's name.
    pub fn consumer_name(&self) -> String {
        self.consumer.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| "pipeline".to_owned());
            format!("{host}-{}", std::process::id())
        })
    }
}

/// Quota alerts: shared by the api (defaults, URL checks when a webhook is
/// saved) and the pipeline (evaluation, delivery).
#[derive(Debug, Clone, clap::Args)]
pub struct AlertArgs {
    /// Default alert thresholds, in whole percents of the monthly quota.
    #[arg(long, env = "FLAGMETER_ALERT_THRESHOLDS", value_delimiter = ',', default_value = "80",
          value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub alert_thresholds: Vec<i32>,
    /// Hosts a Slack webhook URL may point at (comma-separated).
    #[arg(
        long,
        env = "FLAGMETER_WEBHOOK_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "hooks.slack.com"
    )]
    pub webhook_allowed_hosts: Vec<String>,
    /// Also allow plain-http webhooks. For local testing only.
    #[arg(
        long,
        env = "FLAGMETER_WEBHOOK_ALLOW_INSECURE",
        default_value_t = false
    )]
    pub webhook_allow_insecure: bool,
}

impl AlertArgs {
    pub fn policy(&self) -> crate::alerts::webhook::WebhookPolicy {
        crate::alerts::webhook::WebhookPolicy {
            allowed_hosts: self.webhook_allowed_hosts.clone(),
            allow_insecure: self.webhook_allow_insecure,
        }
    }
}

/// Delivery of quota alerts to Slack.
#[derive(Debug, Clone, clap::Args)]
pub struct SenderArgs {
    /// Wait after a first failed delivery, in milliseconds; doubles per
    /// failure (with jitter) up to the maximum.
    #[arg(long, env = "FLAGMETER_ALERT_RETRY_BASE_MS", default_value_t = 1_000)]
    pub alert_retry_base_ms: u64,
    /// Longest wait between two delivery attempts, in milliseconds.
    #[arg(long, env = "FLAGMETER_ALERT_RETRY_MAX_MS", default_value_t = 300_000)]
    pub alert_retry_max_ms: u64,
    /// An alert still undelivered this long after it fired is marked
    /// `failed`, in seconds.
    #[arg(long, env = "FLAGMETER_ALERT_GIVE_UP_SECS", default_value_t = 86_400)]
    pub alert_give_up_secs: u64,
    /// How often to look for due alerts, in milliseconds.
    #[arg(long, env = "FLAGMETER_ALERT_POLL_MS", default_value_t = 1_000)]
    pub alert_poll_ms: u64,
}
