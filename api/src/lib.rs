//! The FlagMeter HTTP service: ingest of usage events into the Valkey stream
//! ([`ingest`], bodies in JSON or MessagePack: [`msgpack`]), usage, cost
//! and entitlement checks over the PostgreSQL rollups, reservations and
//! per-minute limits that hold across replicas ([`limits`]), prices, tenant
//! administration (configuration, Slack webhook, alert history), API keys
//! and their rate limits ([`auth`]), OpenTelemetry GenAI spans counted as
//! events ([`otlp`]), the live dashboard ([`dashboard`]),
//! health, metrics and the OpenAPI docs ([`routes`]).
//!
//! [`startup::Application`] builds the whole service from its configuration;
//! `main` only parses flags, sets up logging and runs it (or a `keys`
//! command, [`auth::cli`], or `prices import`, [`price_catalog`]). It
//! depends on the stream contract (`stream`), not
//! on the worker (`pipeline`).

pub mod auth;
pub mod backlog;
pub mod body;
pub mod body_limit;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod header_timeout;
pub mod http_metrics;
pub mod ingest;
pub mod lag;
pub mod limits;
pub mod msgpack;
pub mod otlp;
pub mod price_catalog;
pub mod routes;
pub mod startup;
pub mod state;
pub mod ttl_cache;
pub mod usage_cache;
