//! What every request handler shares: the database pool, the Valkey
//! connection and the stream's shards.

use alerts::{slack::SlackClient, webhook::WebhookPolicy};
use stream::{Replication, Shards, Valkey};

use crate::{
    auth::Auth, backlog::Backlog, clock::Clock, dashboard::snapshot::Snapshots, lag::Lag,
    limits::Limits, usage_cache::UsageCache,
};
use sea_orm::DatabaseConnection;

/// Shared, cheaply cloned handles.
#[derive(Clone)]
pub struct AppState {
    /// Checks API keys and their rate limits.
    pub auth: Auth,
    /// Usage reads, tenant and key administration, readiness, and key
    /// lookups (cached by [`Auth`]). Accepting an event needs only Valkey.
    pub db: DatabaseConnection,
    /// Multiplexed and auto-reconnecting (to one node or a cluster): every
    /// request shares it, so XADDs from concurrent requests are pipelined on
    /// one socket per node.
    pub valkey: Valkey,
    pub shards: Shards,
    /// Replicas that must confirm an append before it is answered 202.
    pub replication: Option<Replication>,
    /// `Retry-After` seconds of every 503 ([`crate::error::with_retry_after`]).
    pub retry_after_secs: u64,
    /// Each shard's sampled length, and whose turn it is ...
    pub backlog: Backlog,
    /// ... above which a shard takes no more; ingest is refused once every
    /// shard is there, until the pipeline catches up.
    pub high_water: u64,
    /// When the oldest event not yet counted was accepted.
    pub lag: Lag,
    /// Now, by the clock every replica shares (the Valkey server's): what
    /// an event's receipt time and default event time are.
    pub clock: Clock,
    /// Quota of a tenant created by its first event (what a check assumes
    /// for a tenant never seen).
    pub default_quota: i64,
    /// Thresholds of a tenant created without any.
    pub default_thresholds: Vec<i32>,
    /// Which webhook URLs may be saved.
    pub webhook_policy: WebhookPolicy,
    /// How long a rotated signing secret keeps signing beside the new one.
    pub webhook_rotation_grace: std::time::Duration,
    /// For the webhook test message.
    pub slack: SlackClient,
    /// The currency prices, costs and budgets are in (`FLAGMETER_CURRENCY`).
    pub currency: std::sync::Arc<str>,
    /// Recent period usage per tenant, shared by concurrent readers.
    pub usage_cache: UsageCache,
    /// `FLAGMETER_OTLP_TENANT_ATTRIBUTE`: which attribute of a GenAI span
    /// names its tenant.
    pub otlp_tenant_attribute: std::sync::Arc<str>,
    /// The dashboard's latest figures, read once for every viewer.
    pub snapshots: Snapshots,
    /// Reservations, per-minute limits, and the events in flight.
    pub limits: Limits,
}
