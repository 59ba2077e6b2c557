//! Quota and budget alerts: a tenant crossing a threshold of its monthly
//! quota (80 % by default), or of its monthly budget if it has one
//! ([`budget`]), is told in Slack, once per threshold and billing period, however
//! many replicas run and however often they crash.
//!
//! Everything about alerts lives here, and both binaries use it: [`rules`]
//! holds the one threshold rule and applies it both ways, recording alerts
//! that became due (the pipeline, as it counts) and re-arming those no
//! longer reached (the api, when a quota is raised); [`sender`] delivers the
//! recorded alerts from the outbox with retries; [`slack`] builds and posts
//! the message; [`webhook`] keeps webhook URLs to allow-listed hosts;
//! [`config`] holds their settings.

pub mod budget;
pub mod config;
pub mod rules;
pub mod sender;
pub mod slack;
pub mod webhook;
