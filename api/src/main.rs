//! `flagmeter-api`: the HTTP service (ingest, usage, docs), the `keys`
//! command that manages API keys straight in the database, and the
//! `prices import` command that adds price versions from a catalog.

use api::{
    auth::cli::KeysCommand, config::ApiConfig, price_catalog::PricesCommand, startup::Application,
};
use clap::{Parser, Subcommand};
use runtime::config::LogArgs;

/// mimalloc instead of glibc's malloc: per-thread free lists for the many
/// short-lived allocations of each request and batch.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Manage API keys in the database (DATABASE_URL); no api needs to run.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage price versions in the database (DATABASE_URL); no api needs
    /// to run.
    #[command(subcommand)]
    Prices(PricesCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let api_addr = Some(cli.config.api_addr);
    let healthcheck = cli.healthcheck.then_some(runtime::telemetry::Probe {
        addr: api_addr,
        path: "/api/health",
        judge: &|_| Ok(()),
    });
    runtime::telemetry::start(&cli.log, healthcheck).await;
    match cli.command {
        Some(Command::Keys(command)) => return command.run(&cli.config.database).await,
        Some(Command::Prices(command)) => return command.run(&cli.config.database).await,
        None => {}
    }
    let shutdown = runtime::shutdown::on_signal();
    let app = Application::build(cli.config).await?;
    app.run_until_stopped(shutdown).await?;
    Ok(())
}
