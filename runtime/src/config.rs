//! Configuration every FlagMeter process shares: where PostgreSQL is (and
//! how long a pipeline session may stay inside a transaction), how log
//! lines look, how a tenant first seen is created, and the currency. Each field is an environment variable and a
//! `--flag`. Nothing here is ever printed whole: the URL may carry a
//! password.

use std::time::Duration;

use domain::setting::{InvalidSetting, require, require_at_least_one};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

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
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        require_at_least_one([(
            "FLAGMETER_DB_MAX_CONNECTIONS",
            self.db_max_connections.into(),
        )])
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

/// How a tenant first seen in an event is created. Read by both binaries
/// (the pipeline creates such tenants; the api refuses to start with a
/// value the pipeline would refuse, so that one environment cannot start
/// half a deployment).
#[derive(Debug, Clone, clap::Args)]
pub struct TenantArgs {
    /// Monthly quota given to a tenant created by its first event.
    #[arg(long, env = "FLAGMETER_DEFAULT_QUOTA", default_value_t = domain::DEFAULT_MONTHLY_QUOTA)]
    pub default_quota: i64,
}

impl Default for TenantArgs {
    fn default() -> Self {
        Self {
            default_quota: domain::DEFAULT_MONTHLY_QUOTA,
        }
    }
}

/// The currency of prices, costs and budgets. Read by both binaries: the
/// api answers in it, and the pipeline's budget alerts state it.
#[derive(Debug, Clone, clap::Args)]
pub struct CurrencyArgs {
    /// The currency of prices, costs and budgets: an ISO 4217 code.
    #[arg(long, env = "FLAGMETER_CURRENCY", default_value = "USD")]
    pub currency: String,
}

impl Default for CurrencyArgs {
    fn default() -> Self {
        Self {
            currency: "USD".to_owned(),
        }
    }
}

impl CurrencyArgs {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        require(
            self.currency.len() == 3 && self.currency.bytes().all(|b| b.is_ascii_uppercase()),
            "FLAGMETER_CURRENCY",
            &self.currency,
            "must be an ISO 4217 code: three capital letters such as USD",
        )
    }
}

impl TenantArgs {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        require(
            self.default_quota >= 1,
            "FLAGMETER_DEFAULT_QUOTA",
            self.default_quota,
            "must be at least 1 (a tenant's quota is positive)",
        )
    }
}
