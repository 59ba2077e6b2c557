//! What the test suites share, so that no test file builds its own: an
//! isolated environment per test (its own database and stream keys,
//! [`env`](mod@env)), an api on a free port ([`app`]), pipeline replicas, polling
//! until something holds ([`eventually`](mod@eventually)), a fake Slack ([`fake_slack`]),
//! a webhook receiver verifying with the real `standardwebhooks` package
//! ([`standard_webhooks`]),
//! bearer-key clients ([`bearer`]), lists read out of JSON answers
//! ([`json`]), headless Chromium ([`chromium`]), a
//! real Redis Cluster on loopback ([`cluster`]), a TCP proxy that turns
//! its connections half-open on command ([`freezing_proxy`]), the check
//! that the suite reached nothing beyond this machine ([`offhost`]), and
//! `TEST_LOG=1` to see the services' logs ([`log`]). Dev-only: no
//! production crate depends on it.

pub mod app;
pub mod bearer;
pub mod chromium;
pub mod cluster;
pub mod env;
pub mod eventually;
pub mod fake_slack;
pub mod freezing_proxy;
pub mod json;
pub mod log;
pub mod offhost;
pub mod reservations;
pub mod standard_webhooks;

pub use app::{
    Key, TEST_BODY_LIMIT, TestApp, assert_client_error, client_with_key, content_type, create_key,
    spawn_app, spawn_app_with, spawn_app_with_usage,
};
pub use env::TestEnv;
pub use eventually::eventually;
