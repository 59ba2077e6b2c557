//! `flagmeter-load` as a child of the bench: the same binary users run, so
//! that pre-fills and background traffic go through the api exactly as
//! load does, and drains are checked by its `--audit`.

use std::{path::PathBuf, process::Stdio};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, Command},
    sync::watch,
};

use crate::services::{Api, Bench, signal};

/// What `flagmeter-load` prints to stderr once its posts are done and the
/// audit starts polling usage.
const AUDIT_STARTS: &str = "waiting for the pipeline";

/// A running load generator.
pub struct Loader {
    child: Child,
    pid: u32,
    report: PathBuf,
    audit_started: watch::Receiver<bool>,
}

impl Loader {
    /// Starts `flagmeter-load` against `api` with `args`, its JSON report
    /// and stderr log under the bench's output as `tag`.
    pub fn spawn(bench: &Bench, api: &Api, tag: &str, args: &[String]) -> anyhow::Result<Self> {
        let report = bench.out(&format!("{tag}.json"));
        let log = bench.out(&format!("{tag}.log"));
        // A previous run's report must not stand in for a failed one.
        std::fs::remove_file(&report).ok();
        let mut child = Command::new(bench.settings.bin.join("flagmeter-load"))
            .arg("--url")
            .arg(&api.url)
            .arg("--report")
            .arg(&report)
            .args(args)
            .env("FLAGMETER_API_KEY", &api.key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting flagmeter-load")?;
        let pid = child.id().context("a started process has a pid")?;
        let stderr = child.stderr.take().context("stderr is piped")?;
        let (started, audit_started) = watch::channel(false);
        // Read stderr to the end, whatever happens, so that the loader
        // never blocks on a full pipe; the log keeps it for a failed run.
        tokio::spawn(async move {
            let Ok(mut file) = tokio::fs::File::create(&log).await else {
                return;
            };
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains(AUDIT_STARTS) {
                    started.send_replace(true);
                }
                file.write_all(format!("{line}\n").as_bytes()).await.ok();
            }
        });
        Ok(Self {
            child,
            pid,
            report,
            audit_started,
        })
    }

    /// Until every post is answered and the audit begins (an error if the
    /// loader ends first).
    pub async fn posts_done(&mut self) -> anyhow::Result<()> {
        tokio::select! {
            started = self.audit_started.wait_for(|started| *started) => {
                started.context("flagmeter-load ended")?;
                Ok(())
            }
            status = self.child.wait() => bail!("the fill failed: flagmeter-load exited with {}", status?),
        }
    }

    /// Pauses it (SIGSTOP), so that its usage polls do not load the
    /// machine being timed.
    pub fn pause(&self) {
        signal(self.pid, "-STOP");
    }

    pub fn resume(&self) {
        signal(self.pid, "-CONT");
    }

    /// Stops a background loader (SIGTERM) and waits for it.
    pub async fn stop(mut self) {
        self.resume();
        signal(self.pid, "-TERM");
        self.child.wait().await.ok();
    }

    /// Waits for its end and reads its report.
    pub async fn finish(mut self) -> anyhow::Result<LoadReport> {
        self.child.wait().await?;
        let text = std::fs::read_to_string(&self.report).with_context(|| {
            format!("flagmeter-load wrote no report ({})", self.report.display())
        })?;
        Ok(LoadReport(serde_json::from_str(&text)?))
    }
}

/// `flagmeter-load`'s JSON report.
pub struct LoadReport(pub Value);

impl LoadReport {
    /// Whether every accepted token was counted; `None` without `--audit`.
    pub fn audit_match(&self) -> Option<bool> {
        self.0.pointer("/audit/match").and_then(Value::as_bool)
    }

    pub fn number(&self, pointer: &str) -> f64 {
        self.0
            .pointer(pointer)
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
    }

    /// The one-line summary `scripts/bench` printed.
    pub fn summary(&self) -> String {
        format!(
            "{} rate={} req/s={:.0} events/s={:.0} p50={:.2} p95={:.2} p99={:.2} max={:.2} ms \
             errors={} not_sent={} audit_match={}",
            self.0
                .pointer("/profile")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            self.0
                .pointer("/rate")
                .map_or("-".to_owned(), Value::to_string),
            self.number("/requests_per_second"),
            self.number("/events_per_second"),
            self.number("/latency_ms/p50"),
            self.number("/latency_ms/p95"),
            self.number("/latency_ms/p99"),
            self.number("/latency_ms/max"),
            self.number("/errors/total"),
            self.number("/not_sent"),
            self.audit_match().map_or("-".to_owned(), |m| m.to_string()),
        )
    }
}

/// `tenant-0001,...`: `count` tenants of the run's own.
pub fn tenants(count: usize) -> String {
    (1..=count.max(1))
        .map(|i| format!("tenant-{i:04}"))
        .collect::<Vec<_>>()
        .join(",")
}
