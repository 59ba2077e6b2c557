//! Configuration every FlagMeter process shares: where PostgreSQL is (and
//! how long a pipeline session may stay inside a transaction), how log
//! lines look, how a tenant first seen is created, and the currency. Each field is an environment variable and a
//! `--flag`. Nothing here is ever printed whole: the URL may carry a
//! password.
//!
//! **Half-open connections.** A PostgreSQL connection can stop answering
//! without ever failing: the server's host restarts, or a NAT or load
//! balancer forgets the connection, and no reset reaches the client. sqlx
//! 0.9 opens its sockets with a plain `TcpStream::connect` and hands no
//! socket to any hook (`PgConnectOptions` has no keepalive, `after_connect`
//! sees a connection whose stream is private), so client-side keepalive is
//! out of reach; the bounds are timeouts instead. A pooled connection must
//! answer a ping within [`PING_BOUND`] before it is handed out and after it
//! comes back (a step abandoned mid-way returns its connection in an
//! unknown state), or it is closed; the pipeline bounds every step it waits
//! for ([`TransactionBounds::answered`]); and the pipeline's sessions ask
//! the server for keepalive on its side, so that the server too ends a
//! session whose client vanished.

use std::{future::Future, io, time::Duration};

use domain::setting::{InvalidSetting, require, require_at_least_one};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DbErr, RuntimeErr,
    sqlx::{self, Connection as _, postgres::PgConnection},
};

/// Longest wait for a pooled connection's answer to a ping. A live server
/// answers within milliseconds; one that does not is behind a half-open
/// connection, which is closed rather than used (or kept).
pub const PING_BOUND: Duration = Duration::from_secs(1);

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
    /// (see [`TransactionBounds`]), and TCP keepalive on the server's side
    /// of each connection (probes after 5 s of silence, every 2 s; the
    /// session ends after 10 s without an answer).
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
                ("tcp_keepalives_idle", "5".to_owned()),
                ("tcp_keepalives_interval", "2".to_owned()),
                ("tcp_keepalives_count", "3".to_owned()),
                ("tcp_user_timeout", "10000".to_owned()),
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
            .sqlx_logging(false)
            // sqlx's own ping before handing a connection out has no bound
            // of its own (only the acquire timeout's): this one has.
            .test_before_acquire(false)
            .map_sqlx_postgres_before_acquire(|conn, _| Box::pin(answers_ping(conn)))
            .map_sqlx_postgres_pool_opts(|pool| {
                pool.after_release(|conn, _| Box::pin(answers_ping(conn)))
            });
        options
    }
}

/// Whether `conn` answers a ping within [`PING_BOUND`]; an error (the pool
/// then closes the connection without waiting for a goodbye) if not.
async fn answers_ping(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    match tokio::time::timeout(PING_BOUND, conn.ping()).await {
        Ok(answered) => answered.map(|()| true),
        Err(_) => Err(sqlx::Error::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer to a ping within {PING_BOUND:?}"),
        ))),
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
///
/// The client waits at most `reply` for the answer to one step (a
/// statement, or one of the pipeline's transactions of a few statements):
/// above the server's bounds, so that a live server always answers, or ends
/// the step itself, first. No answer by then means the connection is
/// half-open; the step is abandoned (its connection closed) and retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionBounds {
    pub statement: Duration,
    pub lock: Duration,
    pub idle_in_transaction: Duration,
    pub reply: Duration,
}

impl TransactionBounds {
    /// Runs one PostgreSQL `step`, waiting at most [`Self::reply`] for it;
    /// past that it fails as a lost connection would, for the caller to
    /// retry (nothing in it is committed that a retry would count twice:
    /// the pipeline's steps are idempotent).
    pub async fn answered<T>(
        &self,
        step: impl Future<Output = Result<T, DbErr>>,
    ) -> Result<T, DbErr> {
        tokio::time::timeout(self.reply, step)
            .await
            .unwrap_or_else(|_| {
                Err(DbErr::Conn(RuntimeErr::Internal(format!(
                    "no answer from PostgreSQL within {:?}",
                    self.reply
                ))))
            })
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
