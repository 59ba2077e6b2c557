//! The api over real HTTP, against real PostgreSQL and Valkey. One test
//! binary (faster to link); each test spawns its own app, database and
//! stream.

mod alerts;
mod auth;
mod backpressure;
mod dashboard;
mod docs;
mod end_to_end;
mod ingest;
mod pricing;
mod slow_clients;
mod usage;
mod validation;
