//! Prometheus metrics for both binaries: one recorder per process, histogram
//! buckets that make P50/P95/P99 computable, and the process's own CPU time
//! and resident memory (which the exporter does not provide). What each
//! binary measures is described in that binary's crate.
//!
//! Names follow `flagmeter_<thing>_<unit>[_total]`; labels have bounded
//! cardinality (route templates, status codes, a few reasons), never tenant
//! ids. Counters are incremented per batch or request, not per event, on the
//! hot paths.

use std::{sync::OnceLock, time::Duration};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// Latency buckets, 0.5 ms to 30 s.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Batch-size buckets, 1 to 10,000 events.
const EVENTS: &[f64] = &[
    1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_events".into()), EVENTS))
        // Both bucket lists are non-empty constants, the only thing that can fail.
        .expect("non-empty bucket lists")
}

/// Installs the process-wide recorder (once; later calls return the same
/// handle) and returns the handle that renders `/metrics`.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| match builder().install_recorder() {
            Ok(handle) => handle,
            Err(err) => {
                tracing::warn!(%err, "metrics recorder not installed; metrics stay empty");
                builder().build_recorder().handle()
            }
        })
        .clone()
}

/// Keeps the recorder tidy and samples process CPU and memory every few
/// seconds until shutdown.
pub async fn upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    loop {
        handle.run_upkeep();
        sample_process();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// `process_cpu_seconds_total` and `process_resident_memory_bytes` from
/// `/proc/self` (Linux; elsewhere they are simply absent).
fn sample_process() {
    // Kernel ticks and page size: the values of every Linux this runs on; a
    // sysconf call would need libc for two constants.
    const TICKS_PER_SECOND: f64 = 100.0;
    const PAGE_BYTES: f64 = 4096.0;
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some(after_name) = stat.rsplit_once(')').map(|(_, rest)| rest)
    {
        // Fields after the command name: state is 1st, utime 12th, stime 13th.
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // A gauge only because the metrics crate's counters are integers; it
        // only ever grows, so `rate()` reads it as the counter it is.
        metrics::gauge!("process_cpu_seconds_total")
            .set((ticks(11) + ticks(12)) / TICKS_PER_SECOND);
    }
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
        && let Some(pages) = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<f64>().ok())
    {
        metrics::gauge!("process_resident_memory_bytes").set(pages * PAGE_BYTES);
    }
}

/// Describes the process metrics both binaries export.
pub fn describe_process() {
    metrics::describe_gauge!(
        "process_cpu_seconds_total",
        metrics::Unit::Seconds,
        "User and system CPU time of this process"
    );
    metrics::describe_gauge!(
        "process_resident_memory_bytes",
        metrics::Unit::Bytes,
        "Resident memory of this process"
    );
    sample_process();
}

/// Serves `/metrics` on `addr` (the pipeline's endpoint; the api serves it
/// on its own port) until the process ends.
///
/// If the address cannot be bound (another replica on this host has it),
/// the replica still counts, without an endpoint: the error is logged for an
/// operator and the health check, which probes the endpoint, fails.
pub fn serve(addr: std::net::SocketAddr) -> anyhow::Result<PrometheusHandle> {
    let (recorder, exporter) = match builder().with_http_listener(addr).build() {
        Ok(built) => built,
        Err(err) => {
            tracing::error!(%addr, %err, "cannot serve metrics; counting without them (set FLAGMETER_METRICS_ADDR per replica)");
            return Ok(handle());
        }
    };
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    let _ = HANDLE.set(handle.clone());
    tokio::spawn(async move {
        if let Err(err) = exporter.await {
            tracing::error!(?err, "the metrics endpoint stopped");
        }
    });
    Ok(handle)
}
