//! The pipeline's own metrics, described and started at zero. The recorder,
//! its endpoint and the process metrics are [`runtime::metrics`]; the alert
//! deliveries' are [`alerts::metrics`].
//!
//! Names follow `flagmeter_<thing>_<unit>[_total]`; labels have bounded
//! cardinality (a few reasons, never tenant ids); counters are incremented
//! per batch, not per event.

/// Describes the pipeline's metrics and starts every counter at zero, so
/// that dashboards show 0 rather than "no data" before the first event;
/// shows the `claim_idle` time, which alert rules compare batch durations
/// with.
pub fn describe_pipeline(claim_idle: std::time::Duration) {
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
        (
            "flagmeter_events_voided_total",
            "Voids applied: counted events voided, or tombstones left",
        ),
        (
            "flagmeter_alerts_fired_total",
            "Quota and budget alerts recorded as their thresholds were crossed",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, Unit::Count, help);
        metrics::counter!(name).increment(0);
    }
    describe_counter!(
        "flagmeter_events_dead_lettered_total",
        Unit::Count,
        "Entries set aside in PostgreSQL's dead_letters table, by reason"
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
        "Entries in each shard of the stream (sampled), by shard"
    );
    describe_gauge!(
        "flagmeter_consumer_group_lag_entries",
        Unit::Count,
        "Entries not yet delivered to each shard's group (sampled), by shard"
    );
    describe_gauge!(
        "flagmeter_consumer_group_pending_entries",
        Unit::Count,
        "Entries delivered but not acknowledged (sampled), by shard"
    );
    describe_gauge!(
        crate::liveness::PROGRESS,
        Unit::Seconds,
        "When each shard's worker last completed a step (a read, a commit, a settled batch), in Unix time, by shard"
    );
    describe_gauge!(
        "flagmeter_db_pool_connections",
        Unit::Count,
        "PostgreSQL pool connections, by state"
    );
    describe_gauge!(
        "flagmeter_claim_idle_seconds",
        Unit::Seconds,
        "Pending time after which another replica takes an entry over (FLAGMETER_CLAIM_IDLE_MS)"
    );
    metrics::gauge!("flagmeter_claim_idle_seconds").set(claim_idle.as_secs_f64());
    alerts::metrics::describe_recording();
    alerts::metrics::describe_delivery();
}
