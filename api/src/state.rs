//! What every request handler shares: the database pool, the Valkey
//! connection and the stream names.

use alerts::{slack::SlackClient, webhook::WebhookPolicy};
use stream::StreamKeys;

use crate::{
    auth::Auth, backlog::Backlog, dashboard::snapshot::Snapshots, lag::Lag, usage_cache::UsageCache,
};
use redis::aio::ConnectionManager;
use sea_orm::DatabaseConnection;

/// Shared, cheaply cloned handles.
#[derive(Clone)]
pub struct AppState {
    /// Checks API keys and their rate limits.
    pub auth: Auth,
    /// Usage reads, tenant and key administration, readiness, and key
    /// lookups (cached by [`Auth`]). Accepting an event needs only Valkey.
    pub db: DatabaseConnection,
    /// Multiplexed and auto-reconnecting: every request shares it, so XADDs
    /// from concurrent requests are pipelined on one socket.
    pub valkey: ConnectionManager,
    pub keys: StreamKeys,
    /// `Retry-After` seconds of every 503 ([`crate::error::with_retry_after`]).
    pub retry_after_secs: u64,
    /// The stream's sampled length ...
    pub backlog: Backlog,
    /// ... above which ingest is refused until the pipeline catches up.
    pub high_water: u64,
    /// When the oldest event not yet counted was accepted.
    pub lag: Lag,
    /// Quota of a tenant created by its first event (what a check assumes
    /// for a tenant never seen).
    pub default_quota: i64,
    /// Thresholds of a tenant created without any.
    pub default_thresholds: Vec<i32>,
    /// Which webhook URLs may be saved.
    pub webhook_policy: WebhookPolicy,
    /// For the webhook test message.
    pub slack: SlackClient,
    /// The currency prices, costs and budgets are in (`FLAGMETER_CURRENCY`).
    pub currency: std::sync::Arc<str>,
    /// Recent period usage per tenant, shared by concurrent readers.
    pub usage_cache: UsageCache,
    /// The dashboard's latest figures, read once for every viewer.
    pub snapshots: Snapshots,
}
