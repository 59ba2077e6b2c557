//! `flagmeter-pipeline`: one consumer-group replica counting usage events
//! from the Valkey stream into PostgreSQL (run as many as throughput needs),
//! and `flagmeter-pipeline dead-letters list|redrive` for the operator.

use clap::{Parser, Subcommand};
use pipeline::{
    app::{Pipeline, PipelineConfig},
    dead_letters_cli::DeadLetters,
    liveness,
};
use runtime::{config::LogArgs, telemetry::Probe};

/// mimalloc instead of glibc's malloc: per-thread free lists for the many
/// short-lived allocations of each request and batch.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Counts usage events from the stream into per-minute rollups, exactly once.
#[derive(Parser)]
#[command(name = "flagmeter-pipeline", version, about)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    /// Exit 0 if this replica's metrics endpoint answers and every worker
    /// has made progress within twice FLAGMETER_CLAIM_IDLE_MS (or has no
    /// work), 1 otherwise (for a container health check), instead of
    /// running.
    #[arg(long)]
    healthcheck: bool,
    #[command(flatten)]
    config: PipelineConfig,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect or re-drive the dead letters (PostgreSQL table
    /// `dead_letters`; those an earlier version left in `{stream}:dead` are
    /// moved there first).
    #[command(subcommand)]
    DeadLetters(DeadLetters),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let stall_bound = cli.config.worker.stall_bound();
    let judge = |metrics: &str| liveness::judge(metrics, liveness::unix_now(), stall_bound);
    let healthcheck = cli.healthcheck.then_some(Probe {
        addr: cli.config.metrics_addr,
        path: "/",
        judge: &judge,
    });
    runtime::telemetry::start(&cli.log, healthcheck).await;
    match cli.command {
        None => {
            let shutdown = runtime::shutdown::on_signal();
            let pipeline = Pipeline::build(cli.config).await?;
            pipeline.run_until_stopped(shutdown).await
        }
        Some(Command::DeadLetters(command)) => {
            command.run(&cli.config.valkey, &cli.config.database).await
        }
    }
}
