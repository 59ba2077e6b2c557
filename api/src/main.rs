//! `flagmeter-api`: the HTTP service (ingest, usage, docs).

use api::{config::ApiConfig, startup::Application};
use clap::Parser;
use pipeline::config::LogArgs;

/// Accepts AI token usage events and answers quota usage questions.
#[derive(Parser)]
#[command(name = "flagmeter-api", version, about)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    config: ApiConfig,
    /// Exit 0 if the api on FLAGMETER_API_ADDR answers `GET /api/health`,
    /// 1 otherwise (for a container health check), instead of running.
    #[arg(long)]
    healthcheck: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.healthcheck {
        let healthy = pipeline::telemetry::probe(cli.config.api_addr, "/api/health").await;
        std::process::exit(if healthy { 0 } else { 1 });
    }
    pipeline::telemetry::init(&cli.log);
    let shutdown = pipeline::shutdown::on_signal();
    let app = Application::build(cli.config).await?;
    app.run_until_stopped(shutdown).await?;
    Ok(())
}
