//! The stream contract and the consumer-group worker.
//!
//! The api appends events to a Valkey stream with [`stream::append`]; the
//! worker reads them in batches through a consumer group, counts each exactly
//! once into PostgreSQL ([`writer`]) and acknowledges only what is committed.
//! The record format ([`record`]) is known here and nowhere else.
//!
//! The chain, one module a step: [`consumer`] (read, reclaim) → [`record`]
//! (decode) → [`writer`] (one transaction) → [`consumer`] (ack), driven by
//! [`worker`]. [`config`] and [`telemetry`] are shared with the api binary.

pub mod alerts;
pub mod app;
pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod janitor;
pub mod metrics;
pub mod record;
pub mod retry;
pub mod shutdown;
pub mod stream;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod worker;
pub mod writer;
