//! Logging set-up and the health probe, for both binaries.

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

/// Whether `GET http://{addr}{path}` answers 2xx within two seconds; an
/// unspecified address (`0.0.0.0`) is probed on loopback.
pub async fn probe(addr: std::net::SocketAddr, path: &str) -> bool {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let Ok(client) = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}
