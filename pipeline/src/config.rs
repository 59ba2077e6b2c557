//! The worker's configuration: batch sizes, waits, reclaim, retention and
//! how long its PostgreSQL transactions may take. Each field is an
//! environment variable and a `--flag`. What the api shares lives with its
//! concept: [`stream::config`] (Valkey and the stream names),
//! [`runtime::config`] (PostgreSQL, logs, new tenants), [`alerts::config`].

use std::time::Duration;

use domain::setting::{InvalidSetting, require, require_at_least_one};
use runtime::config::TransactionBounds;

/// The pipeline worker.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Consumer name, unique per replica (default: hostname-pid).
    #[arg(long, env = "FLAGMETER_CONSUMER")]
    pub consumer: Option<String>,
    /// Most entries read and committed as one batch.
    #[arg(long, env = "FLAGMETER_BATCH_SIZE", default_value_t = 5000,
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
    /// A consumer that owns no pending entries and has not read for this
    /// long (a replica that crashed or was replaced) is removed from its
    /// group, in seconds.
    #[arg(long, env = "FLAGMETER_STALE_CONSUMER_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub stale_consumer_secs: u64,
    /// A deliberate crash, for fault-injection tests only.
    #[arg(long, env = "FLAGMETER_FAILPOINT", value_enum, hide = true)]
    pub failpoint: Option<crate::worker::Failpoint>,
}

impl WorkerArgs {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
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
        require_at_least_one([
            ("FLAGMETER_CLAIM_INTERVAL_MS", self.claim_interval_ms),
            ("FLAGMETER_TRIM_INTERVAL_MS", self.trim_interval_ms),
            ("FLAGMETER_MAX_DELIVERIES", self.max_deliveries as u64),
        ])?;
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
    /// anyway (beyond it, another replica takes its entries over). The
    /// client waits for an answer the whole claim idle time: above every
    /// server bound (each below it, see [`Self::validate`]), and a step of
    /// up to three statements of a third each fits in it.
    pub fn transaction_bounds(&self) -> TransactionBounds {
        let share = |configured: Option<u64>, divisor: u64| {
            Duration::from_millis(configured.unwrap_or((self.claim_idle_ms / divisor).max(1)))
        };
        TransactionBounds {
            statement: share(self.db_statement_timeout_ms, 3),
            lock: share(self.db_lock_timeout_ms, 3),
            idle_in_transaction: share(self.db_idle_in_transaction_ms, 6),
            reply: Duration::from_millis(self.claim_idle_ms),
        }
    }

    /// How long a worker may go without progress while its stream has work
    /// before the health check fails: twice the claim idle time. A live
    /// worker makes progress at least every block time when idle, and
    /// within the claim idle time (its longest step) plus a backoff sleep
    /// when busy or recovering from a half-open connection.
    pub fn stall_bound(&self) -> Duration {
        Duration::from_millis(self.claim_idle_ms.saturating_mul(2))
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
