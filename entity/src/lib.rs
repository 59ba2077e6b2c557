//! Domain rules and SeaORM entities shared by the api and the pipeline.
//!
//! The api validates what clients send and the pipeline re-validates what it
//! reads from the stream (entries can be written there by anyone with Valkey
//! access), so both must apply the very same rules: they live here, once.

pub mod costing;
pub mod ledger;
pub mod money;
pub mod period;
pub mod pricing;
pub mod setting;
pub mod usage;
pub mod validate;

pub mod alerts;
pub mod api_keys;
pub mod daily_rollups;
pub mod events;
pub mod rollups;
pub mod slack_webhooks;
pub mod tenant_webhooks;
pub mod tenants;

/// Quota given to a tenant that is created by its first event.
pub const DEFAULT_MONTHLY_QUOTA: i64 = 1_000_000;
