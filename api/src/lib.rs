//! The FlagMeter HTTP service: ingest of usage events into the Valkey stream,
//! usage queries over the PostgreSQL rollups, health, OpenAPI docs.
//!
//! [`startup::Application`] builds the whole service from its configuration;
//! `main` only parses flags, sets up logging and runs it.

pub mod auth;
pub mod backlog;
pub mod body_limit;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod header_timeout;
pub mod http_metrics;
pub mod ingest;
pub mod routes;
pub mod startup;
pub mod state;
pub mod ttl_cache;
pub mod usage_cache;
