//! `flagmeter-pipeline`: one consumer-group replica counting usage events
//! from the Valkey stream into PostgreSQL (run as many as throughput needs),
//! and `flagmeter-pipeline dead-letters list|redrive` for the operator.

use clap::{Parser, Subcommand};
use pipeline::{app::PipelineConfig, config::LogArgs, dead_letter, stream::StreamKeys};

/// Counts usage events from the stream into per-minute rollups, exactly once.
#[derive(Parser)]
#[command(name = "flagmeter-pipeline", version, about)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    /// Where Prometheus scrapes this replica's metrics.
    #[arg(long, env = "FLAGMETER_METRICS_ADDR", default_value = "127.0.0.1:9465")]
    metrics_addr: std::net::SocketAddr,
    /// Exit 0 if this replica's metrics endpoint answers, 1 otherwise (for a
    /// container health check), instead of running.
    #[arg(long)]
    healthcheck: bool,
    #[command(flatten)]
    config: PipelineConfig,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect or re-drive the dead-letter stream (`{stream}:dead`).
    #[command(subcommand)]
    DeadLetters(DeadLetters),
}

#[derive(Subcommand)]
enum DeadLetters {
    /// Print the oldest dead letters: id, original id, deliveries, reason.
    List {
        /// Most letters to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put dead letters back into the stream (after fixing their cause).
    Redrive {
        /// Dead-letter ids to re-drive; all of them (up to --limit) if none.
        ids: Vec<String>,
        /// Most letters to re-drive when no ids are given.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.healthcheck {
        let healthy = pipeline::telemetry::probe(cli.metrics_addr, "/").await;
        std::process::exit(if healthy { 0 } else { 1 });
    }
    pipeline::telemetry::init(&cli.log);
    match cli.command {
        None => {
            let shutdown = pipeline::shutdown::on_signal();
            let handle = pipeline::metrics::serve(cli.metrics_addr)?;
            pipeline::metrics::describe_pipeline();
            tokio::spawn(pipeline::metrics::upkeep(handle, shutdown.clone()));
            pipeline::app::run(cli.config, shutdown).await
        }
        Some(Command::DeadLetters(command)) => dead_letters(&cli.config, command).await,
    }
}

async fn dead_letters(config: &PipelineConfig, command: DeadLetters) -> anyhow::Result<()> {
    let keys = StreamKeys::new(&config.valkey.stream, &config.valkey.group);
    let mut conn = redis::Client::open(config.valkey.valkey_url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    match command {
        DeadLetters::List { limit } => {
            for letter in dead_letter::list(&mut conn, &keys, limit).await? {
                println!(
                    "{}\toriginal={}\tdeliveries={}\t{}",
                    letter.id,
                    letter.original_id,
                    letter.deliveries,
                    letter.reason.escape_debug()
                );
            }
        }
        DeadLetters::Redrive { ids, limit } => {
            let mut letters = dead_letter::list(&mut conn, &keys, limit).await?;
            if !ids.is_empty() {
                letters.retain(|l| ids.contains(&l.id));
            }
            let redriven = dead_letter::redrive(&mut conn, &keys, &letters).await?;
            println!(
                "re-drove {redriven} of {} dead letters ({} had no payload and were dropped)",
                letters.len(),
                letters.len() - redriven
            );
        }
    }
    Ok(())
}
