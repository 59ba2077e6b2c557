//! Quota alerts: a tenant crossing a threshold of its monthly quota (80 % by
//! default) is told in Slack, once per threshold and billing period, however
//! many replicas run and however often they crash.
//!
//! [`evaluate`] runs inside the rollup transaction and records due alerts in
//! the `alerts` outbox (unique per tenant, period and threshold). [`sender`]
//! delivers them with retries; [`slack`] builds and posts the message;
//! [`webhook`] keeps webhook URLs to allow-listed hosts.

pub mod evaluate;
pub mod sender;
pub mod slack;
pub mod webhook;
