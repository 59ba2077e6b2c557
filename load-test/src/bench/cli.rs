//! The command line: which benchmark, and the settings every run shares
//! (each also an environment variable, the names `scripts/bench` used).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cgroup::Cpus;

/// The benchmarks of BENCHMARKS.md on this machine: api, pipeline,
/// Valkey/Redis, PostgreSQL and the load generator on one box.
#[derive(Debug, Parser)]
#[command(name = "flagmeter-bench", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The 80/20 single-event mix at each open-model rate (requests/s),
    /// audited.
    Ingest(Rates),
    /// Batches of 100 events, posts only, at each rate (requests/s),
    /// audited.
    Batch(Rates),
    /// End-to-end lag (receipt → committed) at RATE requests/s, from the
    /// pipeline's histogram.
    Lag {
        rate: u32,
        #[command(flatten)]
        load: LoadSettings,
    },
    /// Entitlement checks only (`GET /api/usage/{tenant}/check`) at each
    /// rate, over priced tenants with counted usage.
    Check(TenantRates),
    /// Model calls at each rate (calls/s), audited, with counting
    /// running: a reservation then the event that settles it, beside the
    /// same events without reservations; P50/P99 of a call and Valkey
    /// round trips per call (single node only).
    Reserve(TenantRates),
    /// Pre-fill EVENTS events over TENANTS tenants (audited), then time
    /// WORKERS replicas draining them.
    Drain {
        events: u64,
        workers: usize,
        #[arg(default_value_t = 3)]
        tenants: usize,
    },
    /// Tenants × workers {1, 2, 3}: each round runs every cell back to back,
    /// then a table of medians and of ratios within rounds.
    DrainMatrix {
        events: u64,
        /// Tenant counts of the matrix (comma separated).
        #[arg(
            long,
            env = "TENANT_COUNTS",
            value_delimiter = ',',
            default_value = "1,200,5000"
        )]
        tenant_counts: Vec<usize>,
    },
    /// The box's limits and the api in one round: nginx's static 202 and
    /// the api (2 replicas beside it) under the same wrk 80/20 mix, and
    /// redis-benchmark XADD without and with -P 100.
    Wrk {
        /// Length of each wrk run.
        #[arg(long, env = "DURATION", default_value = "10s")]
        duration: String,
    },
    /// docs/SCALING.md's inputs: fill EVENTS over 200 tenants, drain with
    /// one replica, then WAL and bytes on disk per event, and what
    /// retention by DELETE costs.
    Capacity { events: u64 },
    /// The capped-replica drain: 1, 2 and 3 replicas, each in a cgroup of
    /// its own with a CFS quota of CAP CPUs.
    Replicas {
        events: u64,
        /// CPU caps per replica (comma separated).
        #[arg(long, value_delimiter = ',', default_value = "0.03,0.05", value_parser = cpus)]
        caps: Vec<Cpus>,
        /// Tenant counts (comma separated).
        #[arg(
            long,
            env = "TENANT_COUNTS",
            value_delimiter = ',',
            default_value = "1,200"
        )]
        tenant_counts: Vec<usize>,
    },
    /// Crossing event → signed webhook received, at idle and under
    /// background ingest.
    AlertLatency {
        /// Alerts timed in each phase.
        #[arg(long, default_value_t = 30)]
        samples: usize,
        /// Events per second of background ingest in the loaded phase.
        #[arg(long, default_value_t = 5000)]
        background: u32,
        /// Pipeline replicas.
        #[arg(long, env = "WORKERS", default_value_t = 1)]
        workers: usize,
    },
}

/// Open-model rates over tenants of the run's own.
#[derive(Debug, Args)]
pub struct TenantRates {
    #[arg(required = true)]
    pub rates: Vec<u32>,
    /// Tenants the requests are spread over.
    #[arg(long, env = "TENANTS", default_value_t = 100)]
    pub tenants: usize,
    #[command(flatten)]
    pub load: LoadSettings,
}

/// What every run shares.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Repetitions of each measurement.
    #[arg(long, env = "RUNS", default_value_t = 3, global = true)]
    pub runs: usize,
    /// Stream shards (`FLAGMETER_STREAM_SHARDS` of the api and pipeline).
    #[arg(long, env = "SHARDS", default_value_t = 1, global = true)]
    pub shards: u16,
    /// Start a 3-master Redis Cluster on free loopback ports instead of
    /// using the node at `VALKEY_URL`.
    /// (`CLUSTER=1`, `true`, `yes` or `on`).
    #[arg(long, env = "CLUSTER", global = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub cluster: bool,
    /// The node used without `--cluster`.
    #[arg(
        long,
        env = "VALKEY_URL",
        default_value = "redis://127.0.0.1:6379",
        global = true
    )]
    pub valkey_url: String,
    /// PostgreSQL server (without a database name).
    #[arg(
        long,
        env = "BENCH_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432",
        global = true
    )]
    pub postgres: String,
    /// The database each run drops and creates.
    #[arg(long, env = "BENCH_DB", default_value = "flagmeter_bench", global = true,
          value_parser = database_name)]
    pub database: String,
    /// The api's port.
    #[arg(long, env = "BENCH_PORT", default_value_t = 3700, global = true)]
    pub port: u16,
    /// Replica n serves metrics on this port + n.
    #[arg(
        long,
        env = "BENCH_METRICS_PORT",
        default_value_t = 9700,
        global = true
    )]
    pub metrics_port: u16,
    /// Where the binaries are.
    #[arg(
        long,
        env = "BENCH_BIN",
        default_value = "target/release",
        global = true
    )]
    pub bin: PathBuf,
    /// Where reports and logs go.
    #[arg(long, env = "BENCH_OUT", default_value = "target/bench", global = true)]
    pub out: PathBuf,
}

/// A database name that is safe to write into `DROP DATABASE` unquoted:
/// lower-case letters, digits and `_`, not starting with a digit.
fn database_name(name: &str) -> Result<String, String> {
    let mut chars = name.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain && name.len() <= 63 {
        Ok(name.to_owned())
    } else {
        Err("lower-case letters, digits and _ only, at most 63".to_owned())
    }
}

fn cpus(text: &str) -> Result<Cpus, String> {
    Cpus::parse(text.parse().map_err(|err| format!("{text}: {err}"))?)
}

/// Open-model rates (requests/s), each run in turn.
#[derive(Debug, Clone, Args)]
pub struct Rates {
    #[arg(required = true)]
    pub rates: Vec<u32>,
    #[command(flatten)]
    pub load: LoadSettings,
}

/// The load of the open-model runs.
#[derive(Debug, Clone, Args)]
pub struct LoadSettings {
    /// Length of each run (`flagmeter-load --duration`).
    #[arg(long, env = "DURATION", default_value = "10s")]
    pub duration: String,
    /// Connections of the load generator.
    #[arg(long, env = "CONNECTIONS", default_value_t = 256)]
    pub connections: u32,
    /// Pipeline replicas beside the api.
    #[arg(long, env = "WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// How batch runs post: `json` or `msgpack`.
    #[arg(long, env = "FORMAT", default_value = "json")]
    pub format: String,
}
