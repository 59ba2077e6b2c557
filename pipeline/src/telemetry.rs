//! Logging set-up for both binaries.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{LogArgs, LogFormat};

/// Installs the global subscriber: `RUST_LOG` filters (default `info`),
/// `FLAGMETER_LOG_FORMAT` picks pretty or JSON lines.
pub fn init(args: &LogArgs) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}
