//! `TEST_LOG=1 cargo test ...` shows the logs of the in-process api and
//! pipelines (filtered by `RUST_LOG`, default `info`); without it tests stay
//! quiet. Installed once per test binary, by [`init`].

use std::sync::Once;

/// Installs the test log subscriber if `TEST_LOG` is set (once).
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
    });
}
