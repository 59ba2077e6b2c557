//! The open-model load runs: `flagmeter-load` at given rates against a
//! fresh api and replicas (`ingest`, `batch`), the end-to-end lag the
//! pipeline records meanwhile (`lag`), entitlement checks over priced,
//! counted tenants (`check`), and model calls that reserve before they
//! post (`reserve`).

use anyhow::bail;
use serde_json::json;

use crate::{
    cli::{LoadSettings, Rates, TenantRates},
    loader::{Loader, tenants},
    procfs,
    services::{Api, Bench, Run, Service},
    stats::{median, spread},
};

/// Which mix an `ingest`-style run posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// 80 % single-event posts, 20 % usage reads.
    Single,
    /// Batches of 100 events, posts only.
    Batch,
}

/// A fresh run with the api and `workers` replicas up.
async fn start(
    run: &Run<'_>,
    scopes: &[&str],
    workers: usize,
) -> anyhow::Result<(Api, Vec<Service>)> {
    let api = run.start_api(scopes).await?;
    let mut replicas = Vec::new();
    for n in 1..=workers {
        replicas.push(run.start_worker(n)?);
    }
    Ok((api, replicas))
}

async fn stop(api: Api, replicas: Vec<Service>) {
    for replica in replicas {
        replica.stop().await;
    }
    api.service.stop().await;
}

fn load_args(settings: &LoadSettings, rate: u32) -> Vec<String> {
    vec![
        format!("--rate={rate}"),
        format!("--duration={}", settings.duration),
        format!("--connections={}", settings.connections),
    ]
}

/// `ingest RATE...` and `batch RATE...`: audited runs at each rate.
pub async fn ingest(bench: &Bench, mix: Mix, runs: &Rates) -> anyhow::Result<()> {
    let (rates, settings) = (&runs.rates, &runs.load);
    let name = if mix == Mix::Single {
        "ingest"
    } else {
        "batch"
    };
    let mut table = Vec::new();
    for &rate in rates.iter() {
        let mut runs = Vec::new();
        for number in 1..=bench.settings.runs {
            let run = bench.fresh().await?;
            let (api, replicas) = start(&run, &["ingest", "read"], settings.workers).await?;
            let mut args = load_args(settings, rate);
            match mix {
                Mix::Single => args.push("--mix=80".to_owned()),
                Mix::Batch => args.extend([
                    "--mix=100".to_owned(),
                    "--batch=100".to_owned(),
                    format!("--format={}", settings.format),
                ]),
            }
            args.extend(["--audit".to_owned(), "--drain-timeout=120s".to_owned()]);
            let api_before = procfs::cpu_seconds(api.service.pid);
            let outcome = Loader::spawn(bench, &api, &format!("{name}-{rate}-{number}"), &args)?
                .finish()
                .await;
            match outcome {
                Ok(report) => {
                    let accepted = report.number("/events_accepted").max(1.0);
                    let cpu_us =
                        (procfs::cpu_seconds(api.service.pid) - api_before) * 1e6 / accepted;
                    let rss = |service: Option<&Service>| {
                        service
                            .and_then(|s| procfs::peak_rss_mb(s.pid))
                            .map_or("-".to_owned(), |mb| format!("{mb:.1}"))
                    };
                    println!(
                        "{} api_rss_mb={} pipeline_rss_mb={} api_cpu_us_per_event={cpu_us:.2}",
                        report.summary(),
                        rss(Some(&api.service)),
                        rss(replicas.first()),
                    );
                    runs.push(Some(report));
                }
                Err(err) => {
                    println!("run {number} failed: {err:#}");
                    runs.push(None);
                }
            }
            stop(api, replicas).await;
        }
        table.push((rate, runs));
    }
    for (rate, runs) in table {
        let rates: Vec<f64> = runs
            .iter()
            .flatten()
            .map(|r| r.number("/events_per_second"))
            .collect();
        println!(
            "offered {rate} req/s: events/s median {:.0} ({}), audits {}/{} match, {} runs failed",
            median(&rates).unwrap_or(0.0),
            spread(&rates, |r| format!("{r:.0}")),
            runs.iter()
                .flatten()
                .filter(|r| r.audit_match() == Some(true))
                .count(),
            runs.len(),
            runs.iter().filter(|r| r.is_none()).count(),
        );
    }
    Ok(())
}

/// `lag RATE`: receipt → commit, from replica 1's histogram after an
/// audited run at RATE.
pub async fn lag(bench: &Bench, rate: u32, settings: &LoadSettings) -> anyhow::Result<()> {
    for number in 1..=bench.settings.runs {
        let run = bench.fresh().await?;
        let (api, replicas) = start(&run, &["ingest", "read"], settings.workers.max(1)).await?;
        let mut args = load_args(settings, rate);
        args.push("--audit".to_owned());
        let report = Loader::spawn(bench, &api, &format!("lag-{rate}-{number}"), &args)?
            .finish()
            .await;
        let metrics = bench
            .http
            .get(format!("http://127.0.0.1:{}/", run.metrics_port(1)))
            .send()
            .await?
            .text()
            .await?;
        let buckets = lag_buckets(&metrics);
        let q = |p| {
            interpolated_quantile(&buckets, p).map_or("-".to_owned(), |s| format!("{:.0}", s * 1e3))
        };
        println!(
            "lag rate={rate} events={:.0} p50={} ms p99={} ms (interpolated in buckets)",
            buckets.last().map_or(0.0, |b| b.1),
            q(0.5),
            q(0.99)
        );
        match report {
            Ok(report) => println!("  {}", report.summary()),
            Err(err) => println!("  run {number} failed: {err:#}"),
        }
        stop(api, replicas).await;
    }
    Ok(())
}

/// The cumulative buckets (upper bound in seconds, count) of
/// `flagmeter_end_to_end_lag_seconds`.
fn lag_buckets(metrics: &str) -> Vec<(f64, f64)> {
    metrics
        .lines()
        .filter(|line| line.starts_with("flagmeter_end_to_end_lag_seconds_bucket"))
        .filter_map(|line| {
            let le = line.split("le=\"").nth(1)?.split('"').next()?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, line.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// Quantile `p`, interpolated linearly within the bucket that holds it
/// (the last finite bound when it falls in `+Inf`).
fn interpolated_quantile(buckets: &[(f64, f64)], p: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    let wanted = p * total;
    let (mut prev_bound, mut prev_count) = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= wanted {
            if bound.is_infinite() {
                return Some(prev_bound);
            }
            let within = (wanted - prev_count) / (count - prev_count).max(1.0);
            return Some(prev_bound + (bound - prev_bound) * within);
        }
        (prev_bound, prev_count) = (bound, count);
    }
    None
}

/// `check RATE...`: entitlement checks only, over `tenants` priced tenants
/// whose usage (20,000 events, audited) was counted first.
pub async fn check(bench: &Bench, runs: &TenantRates) -> anyhow::Result<()> {
    let (rates, settings) = (&runs.rates, &runs.load);
    let tenants = tenants(runs.tenants);
    let since = (chrono::Utc::now() - chrono::Duration::days(40))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for &rate in rates {
        for number in 1..=bench.settings.runs {
            let run = bench.fresh().await?;
            let (api, replicas) = start(&run, &["admin"], 1).await?;
            for feature in ["gpt-4o", "claude-3-opus"] {
                let response = bench
                    .http
                    .post(format!("{}/api/prices", api.url))
                    .bearer_auth(&api.key)
                    .json(&json!({"feature": feature, "inputPerMillion": "2.50",
                                  "outputPerMillion": "10", "effectiveFrom": since}))
                    .send()
                    .await?;
                if !response.status().is_success() {
                    bail!("setting the price of {feature}: {}", response.status());
                }
            }
            let fill = [
                "--rate=100",
                "--duration=2s",
                "--mix=100",
                "--batch=100",
                "--audit",
                "--drain-timeout=60s",
                "--features=gpt-4o,claude-3-opus",
            ]
            .map(str::to_owned)
            .into_iter()
            .chain([format!("--tenants={tenants}")])
            .collect::<Vec<_>>();
            let filled = Loader::spawn(bench, &api, &format!("check-fill-{rate}-{number}"), &fill)?
                .finish()
                .await?;
            if filled.audit_match() != Some(true) {
                bail!("the usage the checks read was not counted exactly");
            }
            let mut args = load_args(settings, rate);
            args.extend([
                "--mix=0".to_owned(),
                "--reads=check".to_owned(),
                format!("--tenants={tenants}"),
            ]);
            let report = Loader::spawn(bench, &api, &format!("check-{rate}-{number}"), &args)?
                .finish()
                .await;
            let rss = procfs::peak_rss_mb(api.service.pid)
                .map_or("-".to_owned(), |mb| format!("{mb:.1}"));
            match report {
                Ok(report) => println!("{} api_rss_mb={rss}", report.summary()),
                Err(err) => println!("run {number} failed: {err:#}"),
            }
            stop(api, replicas).await;
        }
    }
    Ok(())
}

/// `reserve RATE...`: at each rate, audited single events with counting
/// running, first without reservations, then as calls that reserve their
/// tokens before posting the event that settles them: what a reservation
/// adds to a call's latency and to Valkey's round trips per call.
pub async fn reserve(bench: &Bench, runs: &TenantRates) -> anyhow::Result<()> {
    let (rates, settings) = (&runs.rates, &runs.load);
    let tenants = tenants(runs.tenants);
    for &rate in rates {
        for number in 1..=bench.settings.runs {
            let mut per_call = Vec::new();
            for reserving in [false, true] {
                let run = bench.fresh().await?;
                let (api, replicas) = start(&run, &["admin"], settings.workers.max(1)).await?;
                // Room for every call: the quota is not what is measured.
                for tenant in tenants.split(',') {
                    let response = bench
                        .http
                        .put(format!("{}/api/tenants/{tenant}", api.url))
                        .bearer_auth(&api.key)
                        .json(&json!({"monthlyQuota": 1_000_000_000_000_i64}))
                        .send()
                        .await?;
                    if !response.status().is_success() {
                        bail!("setting the quota of {tenant}: {}", response.status());
                    }
                }
                let mut args = load_args(settings, rate);
                args.extend([
                    "--mix=100".to_owned(),
                    "--audit".to_owned(),
                    "--drain-timeout=120s".to_owned(),
                    format!("--tenants={tenants}"),
                ]);
                if reserving {
                    args.push("--reserve".to_owned());
                }
                let label = if reserving { "reserve" } else { "plain" };
                let trips_before = bench.valkey_round_trips().await?;
                let report =
                    Loader::spawn(bench, &api, &format!("{label}-{rate}-{number}"), &args)?
                        .finish()
                        .await;
                let trips = trips_before
                    .zip(bench.valkey_round_trips().await?)
                    .map(|(before, after)| after.saturating_sub(before));
                match report {
                    Ok(report) => {
                        let calls = report.number("/requests").max(1.0);
                        let per = trips.map(|t| t as f64 / calls);
                        per_call.push(per);
                        println!(
                            "{label} {} valkey_round_trips_per_call={}",
                            report.summary(),
                            per.map_or("-".to_owned(), |p| format!("{p:.2}"))
                        );
                    }
                    Err(err) => println!("{label} run {number} failed: {err:#}"),
                }
                stop(api, replicas).await;
            }
            if let [Some(plain), Some(reserving)] = per_call[..] {
                println!(
                    "rate={rate} run={number}: a reservation adds {:.2} Valkey round trips per call",
                    reserving - plain
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quantile_is_interpolated_within_its_bucket() {
        let buckets = [
            (0.001, 0.0),
            (0.005, 50.0),
            (0.01, 100.0),
            (f64::INFINITY, 100.0),
        ];
        let p50 = interpolated_quantile(&buckets, 0.5).unwrap();
        assert!((p50 - 0.005).abs() < 1e-9);
        let p75 = interpolated_quantile(&buckets, 0.75).unwrap();
        assert!((p75 - 0.0075).abs() < 1e-9);
    }

    #[test]
    fn a_quantile_in_the_open_bucket_is_the_last_bound() {
        let buckets = [(0.001, 1.0), (f64::INFINITY, 10.0)];
        assert_eq!(interpolated_quantile(&buckets, 0.99), Some(0.001));
    }

    #[test]
    fn lag_buckets_are_read_from_the_exposition() {
        let text = "flagmeter_end_to_end_lag_seconds_bucket{le=\"0.005\"} 3\n\
                    flagmeter_end_to_end_lag_seconds_bucket{le=\"+Inf\"} 4\n\
                    flagmeter_end_to_end_lag_seconds_count 4\n";
        assert_eq!(lag_buckets(text), vec![(0.005, 3.0), (f64::INFINITY, 4.0)]);
    }
}
