//! The plumbing every FlagMeter process shares, whatever it does: the
//! PostgreSQL pool and log settings ([`config`]), logging and the health
//! probe ([`telemetry`]), the shutdown signal ([`shutdown`]) and the
//! Prometheus recorder with the process's own metrics ([`metrics`]).

pub mod config;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;
