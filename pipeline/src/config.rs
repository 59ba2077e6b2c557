//! Configuration shared by both binaries: where Valkey and PostgreSQL are,
//! which stream and group to use, and the log format. Each field is an
//! environment variable and a `--flag`. Nothing here is ever printed whole:
//! the URLs may carry passwords.
//!
//! A setting that can never work (a quota of 0, a block time that blocks
//! forever, a claim time shorter than a read) is refused at start-up by the
//! `validate` methods, with an error naming the environment variable, rather
//! than discovered later as events that cannot be counted.

use std::{fmt::Display, time::Duration};

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

/// A setting that can never work, named by its environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {var}={value}: {rule}")]
pub struct Invalid {
    pub var: &'static str,
    pub value: String,
    pub rule: String,
}

/// `Ok` if `ok`, else the setting `var` (now `value`) breaks `rule`.
pub fn require(
    ok: bool,
    var: &'static str,
    value: impl Display,
    rule: impl Into<String>,
) -> Result<(), Invalid> {
    if ok {
        return Ok(());
    }
    Err(Invalid {
        var,
        value: value.to_string(),
        rule: rule.into(),
    })
}

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

impl ValkeyArgs {
    pub fn validate(&self) -> Result<(), Invalid> {
        require(
            !self.stream.is_empty(),
            "FLAGMETER_STREAM",
            "",
            "must not be empty",
        )?;
        require(
            !self.group.is_empty(),
            "FLAGMETER_GROUP",
            "",
            "must not be empty",
        )
    }
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
    pub fn validate(&self) -> Result<(), Invalid> {
        require(
            self.db_max_connections >= 1,
            "FLAGMETER_DB_MAX_CONNECTIONS",
            self.db_max_connections,
            "must be at least 1",
        )
    }

    /// Opens the connection pool (without logging every statement).
    pub async fn connect(&self) -> Result<DatabaseConnection, DbErr> {
        Database::connect(self.options()).await
    }

    /// Opens the connection pool with every session's transactions bounded
    /// (see [`TransactionBounds`]).
    pub async fn connect_bounded(
        &self,
        bounds: TransactionBounds,
    ) -> Result<DatabaseConnection, DbErr> {
        let mut options = self.options();
        options.map_sqlx_postgres_opts(move |pg| {
            let ms = |d: Duration| format!("{}ms", d.as_millis());
            pg.options([
                ("statement_timeout", ms(bounds.statement)),
                ("lock_timeout", ms(bounds.lock)),
                (
                    "idle_in_transaction_session_timeout",
                    ms(bounds.idle_in_transaction),
                ),
            ])
        });
        Database::connect(options).await
    }

    fn options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::new(self.database_url.clone());
        options
            .max_connections(self.db_max_connections)
            .min_connections(1)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(5))
            .sqlx_logging(false);
        options
    }
}

/// How long one PostgreSQL session of the pipeline may take inside a
/// transaction, so that a replica frozen in the middle of one (stopped, or
/// cut off by a partition) holds its row locks for a bounded time, and the
/// other replicas, waiting on those locks, go on counting.
///
/// PostgreSQL ends a session idle inside a transaction for longer than
/// `idle_in_transaction`, which releases its locks; the frozen replica's
/// batch is rolled back and stays pending for another to take over. A
/// statement (or a wait for a lock) longer than its bound fails and is
/// retried. All three are session settings, sent when a connection opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionBounds {
    pub statement: Duration,
    pub lock: Duration,
    pub idle_in_transaction: Duration,
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
    /// takes it over, in milliseconds. Must exceed the longest batch.
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
    /// Longest PostgreSQL statement, in milliseconds (default: a third of
    /// the claim idle time).
    #[arg(long, env = "FLAGMETER_DB_STATEMENT_TIMEOUT_MS")]
    pub db_statement_timeout_ms: Option<u64>,
    /// Longest wait for a row lock, in milliseconds (default: a third of the
    /// claim idle time).
    #[arg(long, env = "FLAGMETER_DB_LOCK_TIMEOUT_MS")]
    pub db_lock_timeout_ms: Option<u64>,
    /// Longest pause inside a transaction before PostgreSQL ends the session
    /// and releases its locks, in milliseconds (default: a sixth of the claim
    /// idle time).
    #[arg(long, env = "FLAGMETER_DB_IDLE_IN_TRANSACTION_MS")]
    pub db_idle_in_transaction_ms: Option<u64>,
    /// A deliberate crash, for fault-injection tests only.
    #[arg(long, env = "FLAGMETER_FAILPOINT", value_enum, hide = true)]
    pub failpoint: Option<crate::worker::Failpoint>,
}

impl WorkerArgs {
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(consumer) = &self.consumer {
            require(
                !consumer.is_empty(),
                "FLAGMETER_CONSUMER",
                "",
                "must not be empty",
            )?;
        }
        require(
            self.block_ms >= 1,
            "FLAGMETER_BLOCK_MS",
            self.block_ms,
            "must be at least 1 (0 would block forever)",
        )?;
        require(
            self.claim_idle_ms > self.block_ms,
            "FLAGMETER_CLAIM_IDLE_MS",
            self.claim_idle_ms,
            format!(
                "must exceed FLAGMETER_BLOCK_MS ({}): live work would be taken over",
                self.block_ms
            ),
        )?;
        for (var, value) in [
            ("FLAGMETER_CLAIM_INTERVAL_MS", self.claim_interval_ms),
            ("FLAGMETER_TRIM_INTERVAL_MS", self.trim_interval_ms),
            ("FLAGMETER_MAX_DELIVERIES", self.max_deliveries as u64),
        ] {
            require(value >= 1, var, value, "must be at least 1")?;
        }
        for (var, value) in [
            (
                "FLAGMETER_DB_STATEMENT_TIMEOUT_MS",
                self.db_statement_timeout_ms,
            ),
            ("FLAGMETER_DB_LOCK_TIMEOUT_MS", self.db_lock_timeout_ms),
            (
                "FLAGMETER_DB_IDLE_IN_TRANSACTION_MS",
                self.db_idle_in_transaction_ms,
            ),
        ] {
            if let Some(ms) = value {
                require(
                    ms >= 1 && ms < self.claim_idle_ms,
                    var,
                    ms,
                    format!(
                        "must be from 1 to below FLAGMETER_CLAIM_IDLE_MS ({}): a longer \
                         transaction has its entries taken over",
                        self.claim_idle_ms
                    ),
                )?;
            }
        }
        Ok(())
    }

    /// The bounds of every pipeline transaction: the configured ones, else
    /// shares of the claim idle time, within which a batch must be done
    /// anyway (beyond it, another replica takes its entries over).
    pub fn transaction_bounds(&self) -> TransactionBounds {
        let share = |configured: Option<u64>, divisor: u64| {
            Duration::from_millis(configured.unwrap_or((self.claim_idle_ms / divisor).max(1)))
        };
        TransactionBounds {
            statement: share(self.db_statement_timeout_ms, 3),
            lock: share(self.db_lock_timeout_ms, 3),
            idle_in_transaction: share(self.db_idle_in_transaction_ms, 6),
        }
    }

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
    pub fn validate(&self) -> Result<(), Invalid> {
        require(
            !self.alert_thresholds.is_empty(),
            "FLAGMETER_ALERT_THRESHOLDS",
            "",
            "needs at least one threshold",
        )?;
        for host in &self.webhook_allowed_hosts {
            require(
                !host.trim().is_empty(),
                "FLAGMETER_WEBHOOK_ALLOWED_HOSTS",
                self.webhook_allowed_hosts.join(","),
                "must not hold an empty host",
            )?;
        }
        Ok(())
    }

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

impl SenderArgs {
    pub fn validate(&self) -> Result<(), Invalid> {
        for (var, value) in [
            ("FLAGMETER_ALERT_RETRY_BASE_MS", self.alert_retry_base_ms),
            ("FLAGMETER_ALERT_GIVE_UP_SECS", self.alert_give_up_secs),
            ("FLAGMETER_ALERT_POLL_MS", self.alert_poll_ms),
        ] {
            require(value >= 1, var, value, "must be at least 1")?;
        }
        require(
            self.alert_retry_max_ms >= self.alert_retry_base_ms,
            "FLAGMETER_ALERT_RETRY_MAX_MS",
            self.alert_retry_max_ms,
            format!(
                "must be at least FLAGMETER_ALERT_RETRY_BASE_MS ({})",
                self.alert_retry_base_ms
            ),
        )
    }
}

/// How a tenant first seen in an event is created. Read by both binaries
/// (the pipeline creates such tenants; the api refuses to start with a
/// value the pipeline would refuse, so that one environment cannot start
/// half a deployment).
#[derive(Debug, Clone, clap::Args)]
pub struct TenantArgs {
    /// Monthly quota given to a tenant created by its first event.
    #[arg(long, env = "FLAGMETER_DEFAULT_QUOTA", default_value_t = entity::DEFAULT_MONTHLY_QUOTA)]
    pub default_quota: i64,
}

impl Default for TenantArgs {
    fn default() -> Self {
        Self {
            default_quota: entity::DEFAULT_MONTHLY_QUOTA,
        }
    }
}

impl TenantArgs {
    pub fn validate(&self) -> Result<(), Invalid> {
        require(
            self.default_quota >= 1,
            "FLAGMETER_DEFAULT_QUOTA",
            self.default_quota,
            "must be at least 1 (a tenant's quota is positive)",
        )
    }
}
