//! `flagmeter-bench`: the benchmarks of BENCHMARKS.md, in Rust.
//!
//! Each run starts a fresh database and stream, the release binaries
//! (`flagmeter-api`, `flagmeter-pipeline`, `flagmeter-load`) and, where
//! asked, a Redis Cluster (testkit's), then measures one thing and prints a
//! line per run and a table of medians. The stream's keys come from the
//! `stream` crate, so the bench names shards exactly as the services do.

mod alert_latency;
mod capacity;
mod cgroup;
mod cli;
mod drain;
mod loader;
mod metrics;
mod open_load;
mod postgres;
mod procfs;
mod replicas;
mod services;
mod stats;
mod wrk;

use std::process::ExitCode;

use clap::Parser;

use crate::{
    cli::{Cli, Command},
    open_load::Mix,
    services::Bench,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("flagmeter-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let bench = Bench::start(cli.settings).await?;
    match cli.command {
        Command::Ingest(runs) => open_load::ingest(&bench, Mix::Single, &runs).await,
        Command::Batch(runs) => open_load::ingest(&bench, Mix::Batch, &runs).await,
        Command::Wrk { duration } => wrk::run(&bench, &duration).await,
        Command::Capacity { events } => capacity::run(&bench, events).await,
        Command::Lag { rate, load } => open_load::lag(&bench, rate, &load).await,
        Command::Check(runs) => open_load::check(&bench, &runs).await,
        Command::Reserve(runs) => open_load::reserve(&bench, &runs).await,
        Command::Drain {
            events,
            workers,
            tenants,
        } => drain::drain(&bench, events, workers, tenants).await,
        Command::DrainMatrix {
            events,
            tenant_counts,
        } => drain::matrix(&bench, events, &tenant_counts).await,
        Command::Replicas {
            events,
            caps,
            tenant_counts,
        } => replicas::run(&bench, events, &caps, &tenant_counts).await,
        Command::AlertLatency {
            samples,
            background,
            workers,
        } => alert_latency::run(&bench, samples, background, workers).await,
    }
}
