//! The end-to-end lag a real pipeline process exports runs from the api's
//! receipt of an event (its record's `received_ms`) to the COMMIT that
//! counted it, and is recorded as soon as that COMMIT returns, not once
//! the next read does (issue 32: a lag that waited for the next read read
//! a full block time at light load).

use std::time::Duration;

use chrono::Utc;
use testkit::{TestEnv, env as testing};

use crate::{
    services,
    support::{free_port, sample, scrape},
};

/// The value of the sample `name` in a scrape, which must hold it.
fn value(metrics: &str, name: &str) -> f64 {
    sample(metrics, name).unwrap_or_else(|| panic!("{name} in the scrape:\n{metrics}"))
}

#[tokio::test]
async fn the_lag_histogram_runs_from_receipt_to_commit_without_waiting_for_the_next_read() {
    let env = TestEnv::new().await;
    let stack = services(&env);
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    // Each read waits up to a minute: once the event's batch is acked, the
    // next read is still waiting, so a lag recorded only when it returns
    // would not be in the scrape at all.
    let mut worker = stack.spawn_pipeline(
        "lag",
        &[
            ("FLAGMETER_METRICS_ADDR", &metrics_addr),
            ("FLAGMETER_BLOCK_MS", "60000"),
            ("FLAGMETER_CLAIM_IDLE_MS", "120000"),
        ],
    );
    // Received 20 s ago: a lag from receipt is at least that; one from the
    // read (or the commit's start) would be a few milliseconds.
    let received = Utc::now() - chrono::Duration::seconds(20);
    env.append(&[testing::event("acme", "1", "gpt-4o", 10, received)])
        .await;

    assert!(
        stack.drained(Duration::from_secs(20)).await,
        "the stream drains"
    );
    let metrics = scrape(&format!("http://{metrics_addr}/")).await;
    worker.kill().await.unwrap();

    assert_eq!(
        value(&metrics, "flagmeter_end_to_end_lag_seconds_count"),
        1.0,
        "{metrics}"
    );
    let lag = value(&metrics, "flagmeter_end_to_end_lag_seconds_sum");
    assert!(
        (20.0..60.0).contains(&lag),
        "the one event's lag runs from its receipt, 20 s ago, to its commit: {lag} s"
    );
}
