//! The api over real HTTP, against real PostgreSQL and Valkey. One test
//! binary (faster to link); each test spawns its own app, database and
//! stream.

mod alerts;
mod auth;
mod backpressure;
mod dashboard;
mod docs;
mod end_to_end;
mod explorer;
mod ingest;
mod keys;
mod limits;
mod msgpack;
mod otel_sdk;
mod otlp;
mod price_catalog;
mod priced_periods;
mod pricing;
mod shards;
mod slow_clients;
mod strict_bodies;
mod support;
mod tenants;
mod timezones;
mod usage;
mod validation;
mod voids;
mod webhooks;
