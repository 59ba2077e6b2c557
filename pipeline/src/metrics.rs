//! Prometheus metrics for both binaries: one recorder per process, histogram
//! buckets that make P50/P95/P99 computable, and the process's own CPU time
//! and resident memory (which the exporter does not provide).
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

/// Describes the pipeline's metrics and starts every counter at zero, so
/// that dashboards show 0 rather than "no data" before the first event.
pub fn describe_pipeline() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    let counters = [
        (
            "flagmeter_events_read_total",
            "Stream entries read (new and taken over)",
        ),
        (
            "flagmeter_events_counted_total",
            "Events counted for the first time",
        ),
        (
            "flagmeter_events_duplicate_total",
            "Events the ledger already held (redeliveries, client retries)",
        ),
        (
            "flagmeter_events_reclaimed_total",
            "Entries taken over from a silent replica",
        ),
        (
            "flagmeter_transaction_retries_total",
            "Failed batch commits that were retried",
        ),
        ("flagmeter_alerts_fired_total", "Quota alerts recorded"),
        (
            "flagmeter_alerts_delivered_total",
            "Quota alerts Slack accepted",
        ),
        ("flagmeter_alerts_failed_total", "Quota alerts given up on"),
        (
            "flagmeter_alert_retries_total",
            "Failed alert deliveries that will be retried",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, Unit::Count, help);
        metrics::counter!(name).increment(0);
    }
    describe_counter!(
        "flagmeter_events_dead_lettered_total",
        Unit::Count,
        "Entries moved to the dead-letter stream, by reason"
    );
    for reason in ["undecodable", "refused", "redelivered"] {
        metrics::counter!("flagmeter_events_dead_lettered_total", "reason" => reason).increment(0);
    }
    describe_histogram!(
        "flagmeter_batch_size_events",
        Unit::Count,
        "Entries per batch"
    );
    describe_histogram!(
        "flagmeter_batch_duration_seconds",
        Unit::Seconds,
        "Read to ack, per batch"
    );
    describe_histogram!(
        "flagmeter_end_to_end_lag_seconds",
        Unit::Seconds,
        "From the api's receipt to the commit, per event"
    );
    describe_gauge!(
        "flagmeter_stream_length_entries",
        Unit::Count,
        "Entries in the stream (sampled)"
    );
    describe_gauge!(
        "flagmeter_consumer_group_lag_entries",
        Unit::Count,
        "Entries not yet delivered to the group (sampled)"
    );
    describe_gauge!(
        "flagmeter_consumer_group_pending_entries",
        Unit::Count,
        "Entries delivered but not acknowledged (sampled)"
    );
    describe_gauge!(
        "flagmeter_db_pool_connections",
        Unit::Count,
        "PostgreSQL pool connections, by state"
    );
    describe_process();
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
