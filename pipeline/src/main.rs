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
    /// Inspect or re-drive the dead letters (PostgreSQL table
    /// `dead_letters`; those an earlier version left in `{stream}:dead` are
    /// moved there first).
    #[command(subcommand)]
    DeadLetters(DeadLetters),
}

#[derive(Subcommand)]
enum DeadLetters {
    /// Print the oldest dead letters: id, original entry id, kind,
    /// deliveries, reason.
    List {
        /// Most letters to print.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Print only letters after this id (the last id printed).
        #[arg(long)]
        after: Option<i64>,
    },
    /// Put dead letters back into the stream (after fixing their cause).
    Redrive {
        /// Dead-letter ids (as listed) to re-drive; all of them (up to
        /// --limit) if none.
        ids: Vec<i64>,
        /// Most letters to re-drive when no ids are given.
        #[arg(long, default_value_t = 10_000)]
        limit: u64,
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
            // Before anything binds or connects: a setting that can never
            // work stops the replica at once, naming the variable.
            cli.config.validate()?;
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
    let db = config.database.connect().await?;
    migration::run(&db).await?;
    let imported = dead_letter::import_legacy(&mut conn, &db, &keys).await?;
    if imported > 0 {
        eprintln!(
            "moved {imported} dead letters from {} into PostgreSQL",
            keys.dead
        );
    }
    match command {
        DeadLetters::List { limit, after } => {
            for letter in dead_letter::list(&db, &keys.stream, limit, after).await? {
                println!(
                    "{}\toriginal={}\tkind={}\tdeliveries={}\t{}",
                    letter.id,
                    letter.original_id,
                    letter.kind,
                    letter.deliveries,
                    letter.reason.escape_debug()
                );
            }
        }
        DeadLetters::Redrive { ids, limit } => {
            let mut letters = dead_letter::list(&db, &keys.stream, limit, None).await?;
            if !ids.is_empty() {
                letters.retain(|l| ids.contains(&l.id));
            }
            let redriven = dead_letter::redrive(&mut conn, &db, &keys, &letters).await?;
            println!(
                "re-drove {redriven} of {} dead letters ({} had no payload and were dropped)",
                letters.len(),
                letters.len() - redriven
            );
        }
    }
    Ok(())
}
