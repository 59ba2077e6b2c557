//! `flagmeter-pipeline`: one consumer-group replica counting usage events
//! from the Valkey stream into PostgreSQL. Run as many as throughput needs.

use clap::Parser;
use pipeline::{app::PipelineConfig, config::LogArgs};

/// Counts usage events from the stream into per-minute rollups, exactly once.
#[derive(Parser)]
#[command(name = "flagmeter-pipeline", version, about)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    config: PipelineConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    pipeline::telemetry::init(&cli.log);
    let shutdown = pipeline::shutdown::on_signal();
    pipeline::app::run(cli.config, shutdown).await
}
