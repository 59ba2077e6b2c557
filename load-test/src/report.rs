//! The run's figures, printed as a table on stdout and, with `--report`,
//! written as JSON with the same names.

use std::{collections::BTreeMap, fmt, path::Path};

use anyhow::Context;
use serde::Serialize;

use crate::{audit::AuditReport, runner::Ended, stats::Totals};

/// Everything a run reports.
#[derive(Debug, Serialize)]
pub struct Report {
    pub profile: &'static str,
    pub url: String,
    /// Requests per second asked for (the `constant` profile only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    pub planned_seconds: f64,
    /// From the start until the last answer.
    pub elapsed_seconds: f64,
    pub connections: u32,
    pub mix_percent: u8,
    pub batch: u32,
    /// Requests answered or failed.
    pub requests: u64,
    pub requests_per_second: f64,
    /// Open model: sends that were due but found no free connection before
    /// the run ended.
    pub not_sent: u64,
    /// Events in completed posts (a batch counts its events).
    pub events_sent: u64,
    /// Events in posts answered 202.
    pub events_accepted: u64,
    /// `events_accepted` per second.
    pub events_per_second: f64,
    /// Measured from each request's intended send time.
    pub latency_ms: Latency,
    /// Every HTTP answer, by status.
    pub statuses: BTreeMap<String, u64>,
    pub errors: Errors,
    /// Breakpoint: the rate at which errors appeared; it stepped no higher.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_at_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditReport>,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// Requests without the hoped-for answer (202 for a post; 200, or 404 for a
/// tenant not counted yet, for a read).
#[derive(Debug, Serialize)]
pub struct Errors {
    pub total: u64,
    pub by_status: BTreeMap<String, u64>,
    /// `connect`, `timeout` or `other`.
    pub by_transport: BTreeMap<String, u64>,
}

/// The run's settings that the report repeats.
pub struct Settings {
    pub profile: &'static str,
    pub url: String,
    pub rate: Option<f64>,
    pub planned_seconds: f64,
    pub connections: u32,
    pub mix_percent: u8,
    pub batch: u32,
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

fn by_status(counts: &BTreeMap<u16, u64>) -> BTreeMap<String, u64> {
    counts.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

impl Report {
    pub fn new(
        settings: Settings,
        totals: &Totals,
        ended: Ended,
        audit: Option<AuditReport>,
    ) -> Self {
        let seconds = ended.elapsed.as_secs_f64();
        Self {
            profile: settings.profile,
            url: settings.url,
            rate: settings.rate,
            planned_seconds: settings.planned_seconds,
            elapsed_seconds: seconds,
            connections: settings.connections,
            mix_percent: settings.mix_percent,
            batch: settings.batch,
            requests: totals.requests(),
            requests_per_second: per_second(totals.requests(), seconds),
            not_sent: ended.not_sent,
            events_sent: totals.events_sent,
            events_accepted: totals.events_accepted,
            events_per_second: per_second(totals.events_accepted, seconds),
            latency_ms: Latency {
                p50: totals.quantile_ms(0.50),
                p95: totals.quantile_ms(0.95),
                p99: totals.quantile_ms(0.99),
                max: totals.max_ms(),
                mean: totals.latency.mean() / 1000.0,
            },
            statuses: by_status(&totals.statuses),
            errors: Errors {
                total: totals.errors(),
                by_status: by_status(&totals.error_statuses),
                by_transport: totals
                    .transport_errors
                    .iter()
                    .map(|(e, n)| (e.as_str().to_owned(), *n))
                    .collect(),
            },
            stopped_at_rate: ended.stopped_at_rate,
            audit,
        }
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(self).context("encode the report")?;
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))
    }
}

/// The summary table.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = self
            .rate
            .map(|r| format!(" at {r} req/s"))
            .unwrap_or_default();
        writeln!(
            f,
            "{} profile{rate} against {}, {:.1} s ({} connections, {} % posts, batch {})",
            self.profile,
            self.url,
            self.elapsed_seconds,
            self.connections,
            self.mix_percent,
            self.batch
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, value: String| {
            writeln!(f, "  {name:<22}{value:>14}")
        };
        row(f, "requests", self.requests.to_string())?;
        row(f, "req/s", format!("{:.1}", self.requests_per_second))?;
        row(f, "events sent", self.events_sent.to_string())?;
        row(f, "events accepted (202)", self.events_accepted.to_string())?;
        row(f, "events/s", format!("{:.1}", self.events_per_second))?;
        if self.not_sent > 0 {
            row(f, "not sent (no conn.)", self.not_sent.to_string())?;
        }
        let latency = &self.latency_ms;
        for (name, value) in [
            ("latency p50 ms", latency.p50),
            ("latency p95 ms", latency.p95),
            ("latency p99 ms", latency.p99),
            ("latency max ms", latency.max),
        ] {
            row(f, name, format!("{value:.2}"))?;
        }
        for (status, count) in &self.statuses {
            row(f, &format!("status {status}"), count.to_string())?;
        }
        row(f, "errors", self.errors.total.to_string())?;
        for (status, count) in &self.errors.by_status {
            row(f, &format!("  status {status}"), count.to_string())?;
        }
        for (kind, count) in &self.errors.by_transport {
            row(f, &format!("  transport {kind}"), count.to_string())?;
        }
        if let Some(rate) = self.stopped_at_rate {
            row(f, "stopped at (errors)", format!("{rate} req/s"))?;
        }
        if let Some(audit) = &self.audit {
            let verdict = if audit.matched { "match" } else { "MISMATCH" };
            writeln!(
                f,
                "audit: {verdict}: expected {} tokens, counted {} (drain {:.1} s; \
                 tokens of posts uncertain {}, refused {})",
                audit.expected, audit.counted, audit.drain_seconds, audit.uncertain, audit.refused
            )?;
            for (tenant, t) in &audit.tenants {
                writeln!(
                    f,
                    "  {tenant:<22} expected {:>12}  counted {:>12}  uncertain {}  refused {}",
                    t.expected, t.counted, t.uncertain, t.refused
                )?;
            }
        }
        Ok(())
    }
}
