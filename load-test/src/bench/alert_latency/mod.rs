//! Alert latency (issue 32): from the moment a client sends the event that
//! crosses a tenant's threshold to the moment the tenant's signed webhook
//! receives the alert, on a receiver on loopback inside the bench
//! (testkit's, which checks every signature as docs/api.md tells receivers
//! to). Measured at idle and under background ingest, each sample a tenant
//! of its own sent at a random moment, so that samples fall at every point
//! of the replicas' read and settle cycle; each run on a fresh database and
//! stream, and each sample split into its stages ([`stages`]) to show where
//! the time goes.

mod stages;

use std::time::Duration;

use anyhow::{Context, bail};
use rand::Rng;
use serde_json::{Value, json};
use testkit::fake_slack::FakeSlack;
use tokio::time::Instant;

use crate::{
    loader::Loader,
    services::{Api, Bench, Run},
    stats::quantile,
};
use stages::{Sample, Sent};

/// The target of issue 32, in milliseconds.
const TARGET_P50_MS: f64 = 50.0;
const TARGET_P99_MS: f64 = 250.0;
/// Longest wait for one alert before the run is called failed.
const ALERT_TIMEOUT: Duration = Duration::from_secs(30);

/// What one run measured.
struct Measured {
    idle: Vec<Sample>,
    /// With the rate the api accepted meanwhile, in events per second.
    loaded: Option<(Vec<Sample>, f64)>,
}

pub async fn run(
    bench: &Bench,
    samples: usize,
    background: u32,
    workers: usize,
) -> anyhow::Result<()> {
    let mut runs = Vec::with_capacity(bench.settings.runs);
    for number in 1..=bench.settings.runs {
        println!(
            "alert-latency run {number}: load average {}",
            load_average()
        );
        let measured = measure_run(bench, samples, background, workers).await?;
        println!("{}", line(number, "idle", &measured.idle));
        if let Some((loaded, achieved)) = &measured.loaded {
            let phase = format!("background {background} ev/s (accepted {achieved:.0})");
            println!("{}", line(number, &phase, loaded));
        }
        runs.push(measured);
    }

    println!("| phase | run | alerts | P50 ms | P99 ms | max ms | target |");
    println!("|---|---|---|---|---|---|---|");
    for (number, measured) in (1..).zip(&runs) {
        println!("{}", row("idle", number, &measured.idle));
    }
    for (number, measured) in (1..).zip(&runs) {
        if let Some((loaded, achieved)) = &measured.loaded {
            let phase = format!("{background} ev/s asked, {achieved:.0} accepted");
            println!("{}", row(&phase, number, loaded));
        }
    }
    Ok(())
}

/// One run: fresh services, the idle phase, then the loaded one.
async fn measure_run(
    bench: &Bench,
    samples: usize,
    background: u32,
    workers: usize,
) -> anyhow::Result<Measured> {
    let receiver = FakeSlack::start(&[]).await;
    let run = bench
        .fresh()
        .await?
        .with_env("FLAGMETER_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*")
        .with_env("FLAGMETER_WEBHOOK_ALLOW_INSECURE", "true");
    let api = run.start_api(&["admin"]).await?;
    let mut replicas = Vec::new();
    for n in 1..=workers.max(1) {
        replicas.push(run.start_worker(n)?);
    }
    let phases = Phases {
        run: &run,
        api: &api,
        receiver: &receiver,
    };

    let idle = phases.measure("idle", samples).await?;
    let loaded = if background > 0 {
        Some(phases.measure_loaded(background, samples).await?)
    } else {
        None
    };
    for replica in replicas {
        replica.stop().await;
    }
    api.service.stop().await;
    Ok(Measured { idle, loaded })
}

struct Phases<'a> {
    run: &'a Run<'a>,
    api: &'a Api,
    receiver: &'a FakeSlack,
}

impl Phases<'_> {
    /// `samples` alerts under `background` events per second posted in
    /// batches of 10 by `flagmeter-load` on tenants of its own; with the
    /// rate the api accepted meanwhile (the samples' own events are among
    /// them, a few dozen).
    async fn measure_loaded(
        &self,
        background: u32,
        samples: usize,
    ) -> anyhow::Result<(Vec<Sample>, f64)> {
        let rate = (f64::from(background) / 10.0).to_string();
        let args = [
            "--rate",
            &rate,
            "--batch=10",
            "--mix=100",
            "--duration=1h",
            "--connections=64",
            "--tenants",
            "load-a,load-b,load-c",
        ]
        .map(str::to_owned);
        let loader = Loader::spawn(self.run.bench, self.api, "alert-latency-background", &args)?;
        // Let the replicas reach their loaded rhythm first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (added, start) = (self.run.entries_added().await?, Instant::now());
        let loaded = self.measure("loaded", samples).await;
        let achieved =
            (self.run.entries_added().await? - added) as f64 / start.elapsed().as_secs_f64();
        loader.stop().await;
        Ok((loaded?, achieved))
    }

    /// `samples` alerts, one tenant each, split into their stages.
    async fn measure(&self, phase: &str, samples: usize) -> anyhow::Result<Vec<Sample>> {
        let mut sent = Vec::with_capacity(samples);
        for i in 0..samples {
            let tenant = format!("alert-{phase}-{i:03}");
            let secret = self.configure(&tenant).await?;
            let pause = rand::rng().random_range(100..600);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let at = Sent::now();
            self.send(
                "/api/events",
                reqwest::Method::POST,
                json!({"tenant": tenant, "feature": "gpt-4o", "tokens": 1500}),
                202,
            )
            .await?;
            let delivery = self.delivery(&tenant).await?;
            if !delivery.signed_by(&secret) {
                bail!("the alert for {tenant} arrived with a signature that does not verify");
            }
            sent.push((tenant, at, delivery.at));
        }
        stages::split(&self.run.database_url, sent).await
    }

    /// A tenant with a quota of 1,000 tokens, one threshold at 100 %, and
    /// the receiver as its signed webhook; the webhook's secret.
    async fn configure(&self, tenant: &str) -> anyhow::Result<String> {
        self.send(
            &format!("/api/tenants/{tenant}"),
            reqwest::Method::PUT,
            json!({"monthlyQuota": 1000, "alertThresholds": [100]}),
            201,
        )
        .await?;
        let webhook = self
            .send(
                &format!("/api/tenants/{tenant}/webhook"),
                reqwest::Method::PUT,
                json!({"url": self.receiver.webhook_url, "enabled": true}),
                201,
            )
            .await?;
        webhook["secret"]
            .as_str()
            .map(str::to_owned)
            .context("a created webhook's answer carries its secret")
    }

    async fn send(
        &self,
        path: &str,
        method: reqwest::Method,
        body: Value,
        expect: u16,
    ) -> anyhow::Result<Value> {
        let response = self
            .run
            .bench
            .http
            .request(method, format!("{}{path}", self.api.url))
            .bearer_auth(&self.api.key)
            .json(&body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status != expect {
            bail!("{path} answered {status} (expected {expect}): {answer}");
        }
        Ok(answer)
    }

    /// The first delivery for `tenant`.
    async fn delivery(&self, tenant: &str) -> anyhow::Result<testkit::fake_slack::Received> {
        let deadline = Instant::now() + ALERT_TIMEOUT;
        loop {
            let found = self.receiver.requests().into_iter().find(|request| {
                serde_json::from_slice::<Value>(&request.body)
                    .is_ok_and(|body| body["tenant"] == tenant)
            });
            if let Some(request) = found {
                return Ok(request);
            }
            if Instant::now() > deadline {
                bail!("no alert for {tenant} within {ALERT_TIMEOUT:?}");
            }
            // The arrival time is the receiver's own: how often this looks
            // does not change the figure.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The machine's 1, 5 and 15-minute load averages: the box may be shared.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The nearest-rank quantile `q` of the samples' totals, in ms.
fn total(samples: &[Sample], q: f64) -> f64 {
    let totals: Vec<f64> = samples.iter().map(|s| s.total_ms).collect();
    quantile(&totals, q).unwrap_or(f64::NAN)
}

fn line(number: usize, phase: &str, samples: &[Sample]) -> String {
    format!(
        "alert-latency run {number} {phase}: alerts={} p50={:.1} p99={:.1} max={:.1} ms\n  {}",
        samples.len(),
        total(samples, 0.5),
        total(samples, 0.99),
        total(samples, 1.0),
        stages::summary(samples)
    )
}

fn row(phase: &str, number: usize, samples: &[Sample]) -> String {
    let (p50, p99) = (total(samples, 0.5), total(samples, 0.99));
    let met = p50 <= TARGET_P50_MS && p99 <= TARGET_P99_MS;
    format!(
        "| {phase} | {number} | {} | {p50:.1} | {p99:.1} | {:.1} | P50 ≤ {TARGET_P50_MS} / P99 ≤ {TARGET_P99_MS}: {} |",
        samples.len(),
        total(samples, 1.0),
        if met { "met" } else { "not met" }
    )
}
