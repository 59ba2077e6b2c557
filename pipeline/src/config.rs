//! The worker's configuration: batch sizes, waits, reclaim and retention.
//! Each field is an environment variable and a `--flag`. What the api
//! shares lives with its concept: [`stream::config`] (Valkey and the stream
//! names), [`service::config`] (PostgreSQL, logs), [`alerts::config`].

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
