//! How both binaries begin ([`start`]): logging set-up, or, for a
//! container health check, the probe of their own HTTP endpoint.

use std::net::SocketAddr;

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{LogArgs, LogFormat};

/// A container health check: the process answers `GET http://{addr}{path}`
/// with a 2xx, and `judge` finds its body healthy (or says why not).
pub struct Probe<'a> {
    /// Where the process serves; `None` when it serves nowhere.
    pub addr: Option<SocketAddr>,
    pub path: &'a str,
    pub judge: &'a dyn Fn(&str) -> Result<(), String>,
}

/// What every binary does first, once its flags are parsed. With a
/// `healthcheck` it only answers that health check and exits: 0 if the
/// probe succeeds, 1 otherwise, saying why on stderr (Docker shows it in
/// `docker inspect`). Otherwise it sets up logging (`RUST_LOG`,
/// `FLAGMETER_LOG_FORMAT`) and returns, for the binary to run.
pub async fn start(args: &LogArgs, healthcheck: Option<Probe<'_>>) {
    if let Some(healthcheck) = healthcheck {
        let verdict = match healthcheck.addr {
            Some(addr) => match probe(addr, healthcheck.path).await {
                Some(body) => (healthcheck.judge)(&body),
                None => Err(format!("no 2xx answer from {addr}{}", healthcheck.path)),
            },
            None => Err("no address to probe".to_owned()),
        };
        if let Err(why) = &verdict {
            eprintln!("unhealthy: {why}");
        }
        std::process::exit(if verdict.is_ok() { 0 } else { 1 });
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

/// The body of `GET http://{addr}{path}` if it answers 2xx within two
/// seconds; an unspecified address (`0.0.0.0`) is probed on loopback.
async fn probe(addr: SocketAddr, path: &str) -> Option<String> {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .ok()?;
    let response = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()
}
