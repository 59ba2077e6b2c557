//! The consumer-group worker: reads usage events from the Valkey stream in
//! batches, counts each exactly once into PostgreSQL ([`writer`]) and
//! acknowledges only what is committed. The stream contract it reads is the
//! `stream` crate; the alerts it records and delivers are the `alerts`
//! crate.
//!
//! The chain, one module a step: [`consumer`] (read, reclaim) → [`worker`]
//! (decode, commit, settle: alerts and ack) → [`writer`] (one transaction);
//! beside it [`janitor`] (trimming, retention, [`stale_consumers`]), the
//! dead letters (`store::dead_letter`, [`dead_letters_cli`]) and
//! [`liveness`] (each worker's progress, for the health check). [`app`]
//! builds and runs a replica; [`config`] is the worker's settings.

pub mod app;
pub mod config;
pub mod consumer;
pub mod dead_letters_cli;
pub mod janitor;
pub mod liveness;
pub mod metrics;
pub mod retry;
pub mod stale_consumers;
pub mod worker;
pub mod writer;
