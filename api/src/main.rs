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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    pipeline::telemetry::init(&cli.log);
    let shutdown = pipeline::shutdown::on_signal();
    let app = Application::build(cli.config).await?;
    app.run_until_stopped(shutdown).await?;
    Ok(())
}
