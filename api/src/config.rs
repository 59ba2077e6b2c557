//! The api's configuration: each field an environment variable and a flag.

use std::net::SocketAddr;

use pipeline::config::{AlertArgs, DatabaseArgs, ValkeyArgs};

/// Everything the api needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiConfig {
    /// Address the HTTP server listens on.
    #[arg(long, env = "FLAGMETER_API_ADDR", default_value = "127.0.0.1:3000")]
    pub api_addr: SocketAddr,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "FLAGMETER_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Seconds a client is told to wait (`Retry-After`) when ingest is
    /// refused because Valkey is unavailable.
    #[arg(long, env = "FLAGMETER_RETRY_AFTER_SECS", default_value_t = 1)]
    pub retry_after_secs: u64,
    /// Stream length above which ingest answers 503 until the pipeline
    /// catches up (back-pressure instead of exhausting Valkey's memory).
    #[arg(long, env = "FLAGMETER_STREAM_HIGH_WATER", default_value_t = 1_000_000)]
    pub stream_high_water: u64,
    /// How long a tenant's usage, once read, answers `GET /api/usage/{tenant}`
    /// (milliseconds; 0 reads PostgreSQL every time). `asOf` tells its age.
    #[arg(long, env = "FLAGMETER_USAGE_CACHE_MS", default_value_t = 250)]
    pub usage_cache_ms: u64,
    #[command(flatten)]
    pub valkey: ValkeyArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub alerts: AlertArgs,
}
