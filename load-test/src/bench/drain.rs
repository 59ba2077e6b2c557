//! The drain: a stream pre-filled through the api (audited by
//! `flagmeter-load --audit`, paused meanwhile), then timed while replicas
//! count it, with what each part of the machine spent per event.

use std::collections::BTreeMap;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    cgroup::{CpuCap, Cpus},
    loader::{Loader, tenants},
    metrics::WorkerCounters,
    postgres, procfs,
    services::{Api, Bench, Run},
    stats::{median, spread},
};

/// One drain to run.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub events: u64,
    pub workers: usize,
    pub tenants: usize,
    /// Each replica in a cgroup of its own with this cap, when set.
    pub cap: Option<Cpus>,
    /// Also time the bare ledger insert in the same database afterwards.
    pub bare: bool,
}

impl Spec {
    /// Replicas as they come, without the bare insert.
    fn uncapped(events: u64, workers: usize, tenants: usize) -> Self {
        Self {
            events,
            workers,
            tenants,
            cap: None,
            bare: false,
        }
    }
}

/// What one drain measured.
#[derive(Debug, Clone)]
pub struct Drained {
    pub spec: Spec,
    pub events: u64,
    pub seconds: f64,
    pub audit_match: Option<bool>,
    pub waits: Vec<String>,
    pub rss_mb: Vec<f64>,
    /// CPU µs per event: the backends the workers opened, the workers,
    /// Valkey/Redis.
    pub postgres_us: f64,
    pub workers_us: f64,
    pub redis_us: f64,
    pub counters: WorkerCounters,
    /// Rows per second of the bare ledger insert, if measured.
    pub bare_rate: Option<f64>,
}

impl Drained {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.seconds.max(f64::EPSILON)
    }

    fn audited(&self) -> bool {
        self.audit_match == Some(true)
    }

    fn line(&self) -> String {
        let rss: Vec<String> = self.rss_mb.iter().map(|mb| format!("{mb:.1}")).collect();
        let cap = self
            .spec
            .cap
            .map_or(String::new(), |cap| format!("cap={} ", cap.get()));
        let bare = self.bare_rate.map_or(String::new(), |bare| {
            format!(
                " bare_ledger_rows/s={bare:.0} drain/bare={:.2}",
                self.rate() / bare
            )
        });
        format!(
            "drain {cap}tenants={} workers={} events={} seconds={:.2} events/s={:.0} audit_match={} {} \
             rss_mb={} cpu_us_per_event=[postgres={:.1} pipeline={:.1} redis={:.1}] batches={:.0} \
             mean_batch={:.0} reclaimed={:.0}{bare}",
            self.spec.tenants,
            self.spec.workers,
            self.events,
            self.seconds,
            self.rate(),
            self.audit_match.map_or("-".to_owned(), |m| m.to_string()),
            postgres::describe_waits(&self.waits),
            rss.join(" "),
            self.postgres_us,
            self.workers_us,
            self.redis_us,
            self.counters.batches,
            self.counters.mean_batch(),
            self.counters.reclaimed,
        )
    }
}

/// A run whose stream holds the pre-filled events, with the audit waiting
/// (paused) for them to be counted.
pub struct Filled<'a> {
    pub run: Run<'a>,
    pub api: Api,
    pub loader: Loader,
}

/// A fresh run, its api, and exactly `events` events over `tenant_count`
/// tenants in the stream: posts of 100 at a rate within the api's capacity
/// (100,000 events a second), by `flagmeter-load --audit`, which is then
/// paused so that its usage polls do not load the machine being timed.
pub async fn fill<'a>(
    bench: &'a Bench,
    events: u64,
    tenant_count: usize,
    tag: &str,
) -> anyhow::Result<Filled<'a>> {
    let run = bench.fresh().await?;
    let api = run.start_api(&["ingest", "read"]).await?;
    let seconds = events / 100_000 + 1;
    let args = [
        format!("--rate={}", (events / 100 / seconds).max(1)),
        format!("--duration={seconds}s"),
        "--mix=100".to_owned(),
        "--batch=100".to_owned(),
        "--connections=64".to_owned(),
        format!("--tenants={}", tenants(tenant_count)),
        "--audit".to_owned(),
        "--drain-timeout=1800s".to_owned(),
    ];
    let mut loader = Loader::spawn(bench, &api, tag, &args)?;
    loader.posts_done().await?;
    loader.pause();
    Ok(Filled { run, api, loader })
}

/// Fills, drains and audits once; prints the run's line.
pub async fn once(bench: &Bench, spec: Spec, run_number: usize) -> anyhow::Result<Drained> {
    let cap_tag = spec
        .cap
        .map_or(String::new(), |cap| format!("-cap{}", cap.get()));
    let tag = format!(
        "drain{cap_tag}-t{}-w{}-{run_number}",
        spec.tenants, spec.workers
    );
    let Filled { run, api, loader } = fill(bench, spec.events, spec.tenants, &tag).await?;
    let filled = run.stream_len().await?;
    if filled < spec.events {
        // The drain is timed over what is there; the shortfall is posts the
        // loaded box did not send or the api refused (see the fill's log).
        eprintln!(
            "flagmeter-bench: the fill put {filled} of {} events in the stream",
            spec.events
        );
    }
    if let Some(masters) = bench.shard_masters(&run.shards).await {
        println!("{masters}");
    }
    let settings = &bench.settings;
    let before = postgres::backends(&bench.admin, &settings.database).await?;
    let redis_pid = bench.valkey_pid().await?;
    let redis_before = procfs::cpu_seconds(redis_pid);
    let stop_sampling = CancellationToken::new();
    let sampler = tokio::spawn(postgres::sample_waits(
        settings.postgres.clone(),
        settings.database.clone(),
        stop_sampling.clone(),
    ));

    let start = Instant::now();
    let mut caps = Vec::new();
    let mut workers = Vec::new();
    for n in 1..=spec.workers {
        let worker = run.start_worker(n)?;
        if let Some(cpus) = spec.cap {
            let cap = CpuCap::create(&format!("flagmeter-bench-{}-{n}", std::process::id()), cpus)?;
            cap.add(worker.pid)?;
            caps.push(cap);
        }
        workers.push(worker);
    }
    run.wait_idle().await?;
    let seconds = start.elapsed().as_secs_f64();

    stop_sampling.cancel();
    let waits = sampler.await??;
    let rss_mb = workers
        .iter()
        .filter_map(|w| procfs::peak_rss_mb(w.pid))
        .collect();
    let opened = postgres::backends(&bench.admin, &settings.database).await?;
    let per_event = |cpu_seconds: f64| cpu_seconds * 1e6 / filled.max(1) as f64;
    let postgres_us = per_event(procfs::cpu_seconds_of(opened.difference(&before).copied()));
    let workers_us = per_event(procfs::cpu_seconds_of(workers.iter().map(|w| w.pid)));
    let redis_us = per_event(procfs::cpu_seconds(redis_pid) - redis_before);
    let mut counters = WorkerCounters::default();
    for n in 1..=spec.workers {
        counters = counters.add(WorkerCounters::scrape(&bench.http, run.metrics_port(n)).await);
    }
    for worker in workers {
        worker.stop().await;
    }
    // The cgroups go once their processes have exited.
    drop(caps);

    loader.resume();
    let report = loader.finish().await?;
    let bare_rate = if spec.bare {
        let batch = counters.mean_batch().round() as usize;
        postgres::bare_ledger_rate(&run.database_url, batch.max(1)).await
    } else {
        None
    };
    api.service.stop().await;
    let drained = Drained {
        spec,
        events: filled,
        seconds,
        audit_match: report.audit_match(),
        waits,
        rss_mb,
        postgres_us,
        workers_us,
        redis_us,
        counters,
        bare_rate,
    };
    println!("{}", drained.line());
    Ok(drained)
}

/// `drain EVENTS WORKERS TENANTS`: the runs, then their median.
pub async fn drain(
    bench: &Bench,
    events: u64,
    workers: usize,
    tenants: usize,
) -> anyhow::Result<()> {
    let spec = Spec::uncapped(events, workers, tenants);
    let mut runs = Vec::new();
    for run in 1..=bench.settings.runs {
        runs.push(once(bench, spec, run).await?);
    }
    print!("{}", table(&runs));
    Ok(())
}

/// `drain-matrix EVENTS`: rounds of tenants × {1, 2, 3} workers.
pub async fn matrix(bench: &Bench, events: u64, tenant_counts: &[usize]) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for run in 1..=bench.settings.runs {
        for &tenants in tenant_counts {
            for workers in 1..=3 {
                runs.push(once(bench, Spec::uncapped(events, workers, tenants), run).await?);
            }
        }
    }
    print!("{}", table(&runs));
    for (name, a, b) in [
        ("3 workers / 1 worker, 200 tenants", (200, 3), (200, 1)),
        ("3 workers / 1 worker, 1 tenant", (1, 3), (1, 1)),
        ("3 workers / 1 worker, 5,000 tenants", (5000, 3), (5000, 1)),
        ("1 worker, 200 tenants / 1 tenant", (200, 1), (1, 1)),
        ("1 worker, 5,000 tenants / 1 tenant", (5000, 1), (1, 1)),
    ] {
        if let Some(line) = ratio_line(name, &runs, |d| (d.spec.tenants, d.spec.workers), a, b) {
            println!("{line}");
        }
    }
    Ok(())
}

/// Cells keyed by `key`, in run order.
pub fn cells<K: Ord>(runs: &[Drained], key: impl Fn(&Drained) -> K) -> BTreeMap<K, Vec<&Drained>> {
    let mut cells = BTreeMap::<K, Vec<&Drained>>::new();
    for run in runs {
        cells.entry(key(run)).or_default().push(run);
    }
    cells
}

/// `- NAME: median R (each round: ...)`, the ratio of cell `a` to cell `b`
/// within each round (runs of one round see the same noise).
pub fn ratio_line<K: Ord + Copy>(
    name: &str,
    runs: &[Drained],
    key: impl Fn(&Drained) -> K,
    a: K,
    b: K,
) -> Option<String> {
    let cells = cells(runs, key);
    let ratios: Vec<f64> = cells
        .get(&a)?
        .iter()
        .zip(cells.get(&b)?)
        .map(|(x, y)| x.rate() / y.rate())
        .collect();
    let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    Some(format!(
        "- {name}: median {:.2} (each round: {})",
        median(&ratios)?,
        each.join(", ")
    ))
}

/// Medians of the runs per tenants × workers.
fn table(runs: &[Drained]) -> String {
    let mut out = String::from(
        "| tenants | workers | events/s (median of runs) | spread | audits | lock waits / active backends sampled |\n\
         |---|---|---|---|---|---|\n",
    );
    for ((tenants, workers), cell) in cells(runs, |d| (d.spec.tenants, d.spec.workers)) {
        let rates: Vec<f64> = cell.iter().map(|d| d.rate()).collect();
        let locks: usize = cell
            .iter()
            .map(|d| d.waits.iter().filter(|w| w.starts_with("Lock:")).count())
            .sum();
        let samples: usize = cell.iter().map(|d| d.waits.len()).sum();
        out += &format!(
            "| {tenants} | {workers} | **{:.0}** | {} | {}/{} match | {locks}/{samples} |\n",
            median(&rates).unwrap_or(0.0),
            spread(&rates, |r| format!("{r:.0}")),
            cell.iter().filter(|d| d.audited()).count(),
            cell.len(),
        );
    }
    out
}
