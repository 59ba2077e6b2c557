//! Quota and budget alerts: a tenant crossing a threshold of its monthly
//! quota (80 % by default), or of its monthly budget if it has one
//! ([`budget`]), is told in Slack, once per threshold and billing period, however
//! many replicas run and however often they crash.
//!
//! Everything about alerts lives here, and both binaries use it: [`rules`]
//! holds the one threshold rule and applies it both ways, recording alerts
//! that became due (the pipeline, as it counts) and re-arming those no
//! longer reached (the api, when a quota is raised); [`outbox`] records an
//! alert with its pending deliveries; [`sender`] delivers the
//! recorded alerts from the outbox with retries, to Slack and to a tenant's
//! signed webhook; [`slack`] builds and posts the Slack message (and posts
//! the signed one); [`alert_event`] is what a signed webhook receives and
//! [`signing`] how it is signed (Standard Webhooks); [`webhook`] keeps
//! webhook URLs to allow-listed hosts; [`config`] holds their settings;
//! [`metrics`] names what they measure.

pub mod alert_event;
pub mod budget;
pub mod config;
pub mod metrics;
pub mod outbox;
pub mod rules;
pub mod sender;
pub mod signing;
pub mod slack;
pub mod webhook;
