//! How both binaries begin ([`start`]): logging set-up, or, for a
//! container health check, the probe of their own HTTP endpoint.

use std::net::SocketAddr;

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{LogArgs, LogFormat};

/// What every binary does first, once its flags are parsed. With
/// `--healthcheck` it only answers a container health check and exits: 0
/// if `GET http://{addr}{path}` answers 2xx, 1 otherwise (or when it has no
/// `addr` to probe). Otherwise it sets up logging (`RUST_LOG`,
/// `FLAGMETER_LOG_FORMAT`) and returns, for the binary to run.
pub async fn start(args: &LogArgs, healthcheck: bool, addr: Option<SocketAddr>, path: &str) {
    if healthcheck {
        let healthy = match addr {
            Some(addr) => probe(addr, path).await,
            None => false,
        };
        std::process::exit(if healthy { 0 } else { 1 });
    }
    init(args);
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info`),
/// `FLAGMETER_LOG_FORMAT` picks pretty or JSON lines.
fn init(args: &LogArgs) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

/// Whether `GET http://{addr}{path}` answers 2xx within two seconds; an
/// unspecified address (`0.0.0.0`) is probed on loopback.
async fn probe(addr: SocketAddr, path: &str) -> bool {
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
