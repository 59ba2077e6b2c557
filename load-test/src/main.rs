//! `flagmeter-load`: the load generator and end-to-end loss audit.
//!
//! Drives a running api with the original's traffic (k6 profiles, or a
//! constant open-model arrival rate), measures latency without coordinated
//! omission, and with `--audit` checks that every event answered 202 was
//! counted. Exits 1 when the audit finds a mismatch, 2 when the run itself
//! fails (bad arguments are clap's usual 2 as well).

mod audit;
mod cli;
mod client;
mod profile;
mod progress;
mod report;
mod runner;
mod schedule;
mod stats;
mod traffic;

use std::{process::ExitCode, sync::Arc};

use clap::Parser;
use tokio::{sync::Semaphore, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    cli::{Cli, ProfileName},
    profile::Plan,
    report::{Report, Settings},
    runner::Run,
    stats::Stats,
    traffic::Traffic,
};

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(report) => match &report.audit {
            Some(audit) if !audit.matched => {
                eprintln!(
                    "flagmeter-load: audit mismatch: {} tokens accepted, {} counted",
                    audit.expected, audit.counted
                );
                ExitCode::FAILURE
            }
            _ => ExitCode::SUCCESS,
        },
        Err(err) => {
            eprintln!("flagmeter-load: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Report> {
    let plan = Plan::new(cli.profile, cli.rate, cli.duration);
    let client = client::build(cli.connections, cli.api_key.as_deref())?;
    let run_id = (cli.audit || cli.reserve).then(|| uuid::Uuid::now_v7().simple().to_string());
    let traffic = Traffic::new(
        &cli.url,
        cli.tenants,
        cli.features,
        cli.mix,
        cli.reads,
        (cli.batch, cli.format),
        run_id,
    )
    .reserving(cli.reserve);
    let before = if cli.audit {
        Some(audit::usage_now(&client, &traffic).await?)
    } else {
        None
    };
    let run = Arc::new(Run {
        ledger: cli
            .audit
            .then(|| audit::Ledger::new(traffic.tenants().len())),
        client,
        traffic,
        stats: Stats::new()?,
        slots: Arc::new(Semaphore::new(cli.connections as usize)),
    });
    let shape = match &plan {
        Plan::Users(users) => format!(
            "up to {} virtual users sharing {} connections",
            users.peak(),
            cli.connections
        ),
        Plan::Arrivals { .. } => format!("open model, {} connections", cli.connections),
    };
    eprintln!(
        "flagmeter-load: {} profile against {} for {:.1} s, {shape}{}",
        cli.profile.as_str(),
        cli.url,
        plan.total().as_secs_f64(),
        if cli.audit { ", audit on" } else { "" }
    );

    let start = Instant::now();
    let stop_progress = CancellationToken::new();
    let progress = tokio::spawn({
        let run = Arc::clone(&run);
        let stop = stop_progress.clone();
        async move { progress::report(&run.stats, start, stop).await }
    });
    let ended = runner::execute(Arc::clone(&run), &plan, start).await;
    stop_progress.cancel();
    progress.await?;

    let audit = match (&before, &run.ledger) {
        (Some(before), Some(ledger)) => {
            eprintln!("flagmeter-load: waiting for the pipeline to count every accepted event");
            Some(audit::settle(&run.client, &run.traffic, before, ledger, cli.drain_timeout).await?)
        }
        _ => None,
    };
    let settings = Settings {
        profile: cli.profile.as_str(),
        url: cli.url,
        rate: (cli.profile == ProfileName::Constant).then_some(cli.rate),
        planned_seconds: plan.total().as_secs_f64(),
        connections: cli.connections,
        mix_percent: cli.mix,
        batch: cli.batch,
    };
    let report = Report::new(settings, &run.stats.totals(), ended, audit);
    print!("{report}");
    if let Some(path) = &cli.report {
        report.write_json(path)?;
    }
    Ok(report)
}
