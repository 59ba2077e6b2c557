//! Prometheus metrics for both binaries: one recorder per process, histogram
//! buckets that make P50/P95/P99 computable, the text both endpoints serve
//! ([`render`]), with the process's own CPU time and resident memory (which
//! the exporter does not provide), and the pipeline's endpoint ([`serve`]).
//! What each binary measures is described in that binary's crate.
//!
//! Names follow `flagmeter_<thing>_<unit>[_total]`; labels have bounded
//! cardinality (route templates, status codes, a few reasons), never tenant
//! ids. Counters are incremented per batch or request, not per event, on the
//! hot paths.

use std::{convert::Infallible, fmt::Write as _, sync::OnceLock, time::Duration};

use http_body_util::Full;
use hyper::{
    Response,
    body::Bytes,
    header::{CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Latency buckets, 0.5 ms to 30 s.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Batch-size buckets, 1 to 10,000 events.
const EVENTS: &[f64] = &[
    1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0,
];

/// The exposition format's content type (text, version 0.0.4).
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_events".into()), EVENTS))
        // Both bucket lists are non-empty constants, the only thing that can fail.
        .expect("non-empty bucket lists")
}

/// Installs the process-wide recorder (once; later calls return the same
/// handle) and returns the handle whose metrics [`render`] shows.
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

/// Keeps the recorder tidy (histogram buckets drained) until shutdown.
pub async fn upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    loop {
        handle.run_upkeep();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// What a scrape gets: the recorder's metrics, then the process's own,
/// read from `/proc/self` at this moment (Linux; elsewhere they are absent).
///
/// The process metrics are written here rather than recorded: the metrics
/// crate's counters hold integers, and CPU seconds are fractional, so
/// `process_cpu_seconds_total` could only be recorded as a gauge, which
/// `promtool check metrics` rightly refuses for a `_total` name.
pub fn render(handle: &PrometheusHandle) -> String {
    let mut text = handle.render();
    let (cpu_seconds, resident_bytes) = process_figures();
    let mut family = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(value) = value {
            // Writing to a String cannot fail.
            let _ = write!(
                text,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n"
            );
        }
    };
    family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        cpu_seconds,
    );
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        resident_bytes,
    );
    text
}

/// CPU seconds (user + system) and resident bytes of this process.
fn process_figures() -> (Option<f64>, Option<f64>) {
    // Kernel ticks and page size: the values of every Linux this runs on; a
    // sysconf call would need libc for two constants.
    const TICKS_PER_SECOND: f64 = 100.0;
    const PAGE_BYTES: f64 = 4096.0;
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name: state is 1st, utime 12th, stime 13th.
            let after_name = stat.rsplit_once(')')?.1.to_owned();
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
            Some((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
        });
    let resident = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|pages| pages * PAGE_BYTES);
    (cpu, resident)
}

/// Serves [`render`] on `addr`, at any path (the pipeline's endpoint; the
/// api serves `/metrics` on its own port) until the process ends.
///
/// If the address cannot be bound (another replica on this host has it),
/// the replica still counts, without an endpoint: the error is logged for an
/// operator and the health check, which probes the endpoint, fails.
pub async fn serve(addr: std::net::SocketAddr) -> PrometheusHandle {
    let handle = handle();
    match TcpListener::bind(addr).await {
        Ok(listener) => {
            tokio::spawn(answer_scrapes(listener, handle.clone()));
        }
        Err(err) => {
            tracing::error!(%addr, %err, "cannot serve metrics; counting without them (set FLAGMETER_METRICS_ADDR per replica)");
        }
    }
    handle
}

/// Answers every request on `listener` with the metrics, one task a
/// connection.
async fn answer_scrapes(listener: TcpListener, handle: PrometheusHandle) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(%err, "cannot accept a metrics connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handle = handle.clone();
        let scrape = service_fn(move |_request| {
            let mut response = Response::new(Full::new(Bytes::from(render(&handle))));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_TEXT));
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(async move {
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), scrape)
                .await
            {
                tracing::debug!(%err, "a metrics connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_cpu_time_is_a_counter_and_memory_a_gauge() {
        let text = render(&builder().build_recorder().handle());
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total "),
            "{text}"
        );
        assert!(
            text.contains("# TYPE process_resident_memory_bytes gauge\n"),
            "{text}"
        );
    }
}
