//! Alert latency (issue 32): from the moment a client sends the event that
//! crosses a tenant's threshold to the moment the tenant's signed webhook
//! receives the alert, on a receiver on loopback inside the bench
//! (testkit's, which checks every signature as docs/api.md tells receivers
//! to). Measured at idle and under background ingest, each sample a tenant
//! of its own sent at a random moment, so that samples fall at every point
//! of the replicas' read and settle cycle.

use std::time::Duration;

use anyhow::{Context, bail};
use rand::Rng;
use serde_json::{Value, json};
use testkit::fake_slack::FakeSlack;
use tokio::time::Instant;

use crate::{
    loader::Loader,
    services::{Api, Bench},
    stats::quantile,
};

/// The target of issue 32, in milliseconds.
const TARGET_P50_MS: f64 = 50.0;
const TARGET_P99_MS: f64 = 250.0;
/// Longest wait for one alert before the run is called failed.
const ALERT_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(
    bench: &Bench,
    samples: usize,
    background: u32,
    workers: usize,
) -> anyhow::Result<()> {
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
        bench,
        api: &api,
        receiver: &receiver,
    };

    let idle = phases.measure("idle", samples).await?;
    println!("{}", line("idle", &idle));
    let loaded = if background > 0 {
        // Batches of 10 events: the rate in events, at a tenth of the
        // requests, on tenants of the load's own.
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
        let loader = Loader::spawn(bench, &api, "alert-latency-background", &args)?;
        // Let the replicas reach their loaded rhythm first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (added, start) = (run.entries_added().await?, Instant::now());
        let loaded = phases.measure("loaded", samples).await;
        // What the api accepted meanwhile (the samples' own events are
        // among them, a few dozen).
        let achieved = (run.entries_added().await? - added) as f64 / start.elapsed().as_secs_f64();
        loader.stop().await;
        let loaded = loaded?;
        println!(
            "{} (background achieved {achieved:.0} ev/s)",
            line(&format!("background {background} ev/s"), &loaded)
        );
        Some(loaded)
    } else {
        None
    };
    for replica in replicas {
        replica.stop().await;
    }
    api.service.stop().await;

    println!("| phase | alerts | P50 ms | P99 ms | max ms | target |");
    println!("|---|---|---|---|---|---|");
    println!("{}", row("idle", &idle));
    if let Some(loaded) = &loaded {
        println!("{}", row(&format!("{background} ev/s background"), loaded));
    }
    Ok(())
}

struct Phases<'a> {
    bench: &'a Bench,
    api: &'a Api,
    receiver: &'a FakeSlack,
}

impl Phases<'_> {
    /// `samples` alerts, one tenant each; their latencies in ms.
    async fn measure(&self, phase: &str, samples: usize) -> anyhow::Result<Vec<f64>> {
        let mut latencies = Vec::with_capacity(samples);
        for i in 0..samples {
            let tenant = format!("alert-{phase}-{i:03}");
            let secret = self.configure(&tenant).await?;
            let pause = rand::rng().random_range(100..600);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let sent = Instant::now();
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
            latencies.push(delivery.at.duration_since(sent.into_std()).as_secs_f64() * 1e3);
        }
        Ok(latencies)
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

fn line(phase: &str, latencies: &[f64]) -> String {
    let q = |p| quantile(latencies, p).unwrap_or(f64::NAN);
    format!(
        "alert-latency {phase}: alerts={} p50={:.1} p99={:.1} max={:.1} ms",
        latencies.len(),
        q(0.5),
        q(0.99),
        q(1.0)
    )
}

fn row(phase: &str, latencies: &[f64]) -> String {
    let q = |p| quantile(latencies, p).unwrap_or(f64::NAN);
    let met = q(0.5) <= TARGET_P50_MS && q(0.99) <= TARGET_P99_MS;
    format!(
        "| {phase} | {} | {:.1} | {:.1} | {:.1} | P50 ≤ {TARGET_P50_MS} / P99 ≤ {TARGET_P99_MS}: {} |",
        latencies.len(),
        q(0.5),
        q(0.99),
        q(1.0),
        if met { "met" } else { "not met" }
    )
}
