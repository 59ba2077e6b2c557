//! The api's configuration: each field an environment variable and a flag.

use std::{net::SocketAddr, time::Duration};

use alerts::config::AlertArgs;
use domain::setting::{InvalidSetting, require};
use runtime::config::{CurrencyArgs, DatabaseArgs, TenantArgs};
use stream::{Replication, config::ValkeyArgs};

/// Everything the api needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiConfig {
    /// Address the HTTP server listens on.
    #[arg(long, env = "FLAGMETER_API_ADDR", default_value = "127.0.0.1:3000")]
    pub api_addr: SocketAddr,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "FLAGMETER_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Seconds a client is told to wait (`Retry-After`) with every 503:
    /// ingest refused (Valkey unavailable, the stream above its high-water
    /// mark), PostgreSQL unavailable, a key lookup timing out.
    #[arg(
        long,
        env = "FLAGMETER_RETRY_AFTER_SECS",
        default_value_t = crate::error::DEFAULT_RETRY_AFTER_SECS
    )]
    pub retry_after_secs: u64,
    /// Stream length above which ingest answers 503 until the pipeline
    /// catches up (back-pressure instead of exhausting Valkey's memory).
    #[arg(long, env = "FLAGMETER_STREAM_HIGH_WATER", default_value_t = 1_000_000)]
    pub stream_high_water: u64,
    /// How long a tenant's usage, once read, answers `GET /api/usage/{tenant}`
    /// (milliseconds; 0 reads PostgreSQL every time). `asOf` tells its age.
    #[arg(long, env = "FLAGMETER_USAGE_CACHE_MS", default_value_t = 250)]
    pub usage_cache_ms: u64,
    /// Longest time a client may take to send a request's headers, in
    /// milliseconds; a slower connection is closed (so that slow senders
    /// cannot hold connections open).
    #[arg(long, env = "FLAGMETER_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// Valkey replicas that must confirm an event (`WAIT`) before it is
    /// answered 202; otherwise 503 with `Retry-After`. 0 (the default): no
    /// waiting, the primary's reply is enough.
    #[arg(long, env = "FLAGMETER_VALKEY_MIN_REPLICAS", default_value_t = 0)]
    pub valkey_min_replicas: u32,
    /// How long ingest waits for those replicas, in milliseconds (below the
    /// 5 s reply timeout).
    #[arg(long, env = "FLAGMETER_VALKEY_WAIT_MS", default_value_t = 1_000)]
    pub valkey_wait_ms: u64,
    /// How long a rotated webhook secret keeps signing deliveries beside
    /// the new one, in seconds (0: it stops at once), so that receivers
    /// can switch without refusing an alert.
    #[arg(
        long,
        env = "FLAGMETER_WEBHOOK_ROTATION_GRACE_SECS",
        default_value_t = 86_400
    )]
    pub webhook_rotation_grace_secs: u64,
    #[command(flatten)]
    pub money: CurrencyArgs,
    /// The span (or resource) attribute that names the tenant of a GenAI
    /// span sent to `POST /v1/traces`.
    #[arg(
        long,
        env = "FLAGMETER_OTLP_TENANT_ATTRIBUTE",
        default_value = "flagmeter.tenant"
    )]
    pub otlp_tenant_attribute: String,
    /// What a reservation gets when the tenant's counted usage is unknown
    /// (PostgreSQL unreachable and no usage read this period): `allow`
    /// grants it as far as the per-minute limits allow (a PostgreSQL
    /// outage does not stop the tenants' model calls), `refuse` answers 503.
    #[arg(
        long,
        env = "FLAGMETER_LIMITS_WHEN_UNKNOWN",
        value_enum,
        default_value_t = crate::limits::WhenUnknown::Allow
    )]
    pub limits_when_unknown: crate::limits::WhenUnknown,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub valkey: ValkeyArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub alerts: AlertArgs,
    #[command(flatten)]
    pub tenants: TenantArgs,
}

/// How long the api waits for any Valkey reply before answering 503.
pub const VALKEY_REPLY_TIMEOUT_MS: u64 = 5_000;

/// The longest a rotated secret may keep signing: an old secret is a
/// liability, and a receiver has long switched by then.
const MAX_ROTATION_GRACE_SECS: u64 = 30 * 86_400;

/// The smallest body limit that still fits a single event.
const MIN_BODY_BYTES: usize = 1024;

impl ApiConfig {
    /// Refuses settings that can never work, naming the variable.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        require(
            self.max_body_bytes >= MIN_BODY_BYTES,
            "FLAGMETER_MAX_BODY_BYTES",
            self.max_body_bytes,
            format!("must be at least {MIN_BODY_BYTES}"),
        )?;
        for (var, value) in [
            ("FLAGMETER_RETRY_AFTER_SECS", self.retry_after_secs),
            ("FLAGMETER_STREAM_HIGH_WATER", self.stream_high_water),
            ("FLAGMETER_HEADER_TIMEOUT_MS", self.header_timeout_ms),
        ] {
            require(value >= 1, var, value, "must be at least 1")?;
        }
        require(
            (1..=VALKEY_REPLY_TIMEOUT_MS / 2).contains(&self.valkey_wait_ms),
            "FLAGMETER_VALKEY_WAIT_MS",
            self.valkey_wait_ms,
            format!(
                "must be from 1 to {} (half the Valkey reply timeout)",
                VALKEY_REPLY_TIMEOUT_MS / 2
            ),
        )?;
        require(
            self.webhook_rotation_grace_secs <= MAX_ROTATION_GRACE_SECS,
            "FLAGMETER_WEBHOOK_ROTATION_GRACE_SECS",
            self.webhook_rotation_grace_secs,
            format!("must be at most {MAX_ROTATION_GRACE_SECS} (30 days)"),
        )?;
        self.money.validate()?;
        require(
            !self.otlp_tenant_attribute.trim().is_empty(),
            "FLAGMETER_OTLP_TENANT_ATTRIBUTE",
            &self.otlp_tenant_attribute,
            "must name an attribute",
        )?;
        self.auth.validate()?;
        self.valkey.validate()?;
        self.database.validate()?;
        self.alerts.validate()?;
        self.tenants.validate()
    }

    /// Replicas every append waits for, if any.
    pub fn replication(&self) -> Option<Replication> {
        Replication::new(
            self.valkey_min_replicas,
            Duration::from_millis(self.valkey_wait_ms),
        )
    }
}

/// Who may call the api, and how often.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// A bootstrap admin key (at least 32 characters), accepted besides the
    /// keys in the database: to create the first keys, or for operators.
    /// Unset, only database keys are accepted.
    #[arg(
        long,
        env = "FLAGMETER_ADMIN_KEY",
        hide_env_values = true,
        value_parser = admin_key
    )]
    pub admin_key: Option<String>,
    /// Requests a second each key may make on average (0: no limit).
    #[arg(long, env = "FLAGMETER_RATE_LIMIT_PER_SEC", default_value_t = 10_000)]
    pub rate_limit_per_sec: u32,
    /// Requests a key may make at once above its average (default: one
    /// second's worth).
    #[arg(long, env = "FLAGMETER_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,
    /// How long a replica trusts what it found for a key (milliseconds): a
    /// revoked key stops working on every replica within this time.
    #[arg(long, env = "FLAGMETER_KEY_CACHE_MS", default_value_t = 2_000)]
    pub key_cache_ms: u64,
}

impl AuthArgs {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if let Some(burst) = self.rate_limit_burst {
            require(
                burst >= 1,
                "FLAGMETER_RATE_LIMIT_BURST",
                burst,
                "must be at least 1",
            )?;
            require(
                self.rate_limit_per_sec >= 1,
                "FLAGMETER_RATE_LIMIT_BURST",
                burst,
                "has no effect with FLAGMETER_RATE_LIMIT_PER_SEC=0 (no limit)",
            )?;
        }
        require(
            self.key_cache_ms >= 1,
            "FLAGMETER_KEY_CACHE_MS",
            self.key_cache_ms,
            "must be at least 1 (keys are remembered while PostgreSQL is down)",
        )
    }
}

/// Refuses a bootstrap admin key short enough to guess.
fn admin_key(value: &str) -> Result<String, String> {
    if value.chars().count() < 32 {
        return Err("the admin key must be at least 32 characters".into());
    }
    Ok(value.to_owned())
}
