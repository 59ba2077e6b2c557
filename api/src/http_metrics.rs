//! Per-request metrics: requests by route template, method and status, and
//! request duration by route and method. The route is the matched template
//! (`/api/usage/:tenant`), never the raw path, so the label set stays small;
//! a request that matched no route is `unmatched`.
//!
//! Ingest rejections are counted here too, per request: the handlers count
//! accepted events (a batch is many), but a request refused before its
//! handler ran (malformed JSON, too large) never reaches them.

use std::time::Instant;

use poem::{Endpoint, IntoResponse, PathPattern, Request, Response, Result};

const INGEST_ROUTES: [&str; 2] = ["/api/events", "/api/events/batch"];

/// Describes the api's metrics and starts its counters at zero, so that
/// dashboards show 0 rather than "no data" before the first request; shows
/// the stream's `high_water` mark, which alert rules compare lengths with.
pub fn describe(high_water: u64) {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "flagmeter_http_requests_total",
        Unit::Count,
        "HTTP requests, by route template, method and status"
    );
    describe_histogram!(
        "flagmeter_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request duration, by route template and method"
    );
    describe_counter!(
        "flagmeter_events_accepted_total",
        Unit::Count,
        "Events durably appended to the stream"
    );
    metrics::counter!("flagmeter_events_accepted_total").increment(0);
    labelled_counter(
        "flagmeter_events_rejected_total",
        "Ingest requests refused, by reason",
        ("reason", &["invalid", "unavailable"]),
    );
    labelled_counter(
        "flagmeter_backpressure_responses_total",
        "503s answered to ingest, by cause",
        (
            "cause",
            &["high_water", "valkey_unavailable", "not_replicated"],
        ),
    );
    labelled_counter(
        "flagmeter_otlp_spans_total",
        "Spans received on POST /v1/traces, by outcome: accepted as usage events, skipped (no usage) or rejected",
        ("outcome", &["accepted", "skipped", "rejected"]),
    );
    describe_histogram!(
        "flagmeter_xadd_duration_seconds",
        Unit::Seconds,
        "Time to append a request's events to the stream"
    );
    describe_gauge!(
        "flagmeter_stream_length_entries",
        Unit::Count,
        "Entries in each shard of the stream (sampled), by shard"
    );
    describe_gauge!(
        "flagmeter_clock_offset_seconds",
        Unit::Seconds,
        "The Valkey server's clock minus this host's; events are stamped by Valkey's"
    );
    describe_gauge!(
        "flagmeter_stream_high_water_entries",
        Unit::Count,
        "Length at which a shard takes no more events (FLAGMETER_STREAM_HIGH_WATER)"
    );
    metrics::gauge!("flagmeter_stream_high_water_entries").set(high_water as f64);
    alerts::metrics::describe_recording();
}

/// Describes a counter and starts it at zero for each value of its one
/// label.
fn labelled_counter(
    name: &'static str,
    description: &'static str,
    (label, values): (&'static str, &[&'static str]),
) {
    metrics::describe_counter!(name, metrics::Unit::Count, description);
    for &value in values {
        metrics::counter!(name, label => value).increment(0);
    }
}

/// The method as a label: one of the standard methods, or `other`. A
/// client may send any token as a method, and each distinct label would be a
/// new time series kept forever.
fn method_label(method: &poem::http::Method) -> String {
    use poem::http::Method;
    let known = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ];
    if known.contains(method) {
        method.as_str().to_owned()
    } else {
        "other".to_owned()
    }
}

pub async fn record<E: Endpoint>(next: E, req: Request) -> Result<Response> {
    let started = Instant::now();
    let method = method_label(req.method());
    let result = next.call(req).await.map(IntoResponse::into_response);
    let (status, pattern) = match &result {
        Ok(response) => (response.status(), response.data::<PathPattern>()),
        Err(err) => (err.status(), err.data::<PathPattern>()),
    };
    let route = pattern.map_or_else(|| "unmatched".to_owned(), |p| p.0.to_string());
    if INGEST_ROUTES.contains(&route.as_str()) {
        let reason = match status.as_u16() {
            503 => Some("unavailable"),
            400..=499 => Some("invalid"),
            _ => None,
        };
        if let Some(reason) = reason {
            metrics::counter!("flagmeter_events_rejected_total", "reason" => reason).increment(1);
        }
    }
    metrics::counter!(
        "flagmeter_http_requests_total",
        "route" => route.clone(),
        "method" => method.clone(),
        "status" => status.as_str().to_owned()
    )
    .increment(1);
    metrics::histogram!("flagmeter_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    result
}
