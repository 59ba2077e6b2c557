//! Api replicas whose clocks are wrong (run under `faketime`, as a host
//! without NTP would be) still stamp every event by the one clock they
//! share, Valkey's: an event without a timestamp is billed at the true
//! time, an accurate client timestamp is never refused as "in the future",
//! receipt times (on which retention keys) are true, and the replica says
//! that its clock is off.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use testkit::TestEnv;
use tokio::process::Child;

use crate::{
    services,
    support::{Services, client, expect_status, sample, scrape},
};

/// libfaketime, from Debian's `faketime` package (multiarch path).
fn libfaketime() -> std::path::PathBuf {
    std::fs::read_dir("/usr/lib")
        .expect("/usr/lib is readable")
        .filter_map(|entry| Some(entry.ok()?.path().join("faketime/libfaketime.so.1")))
        .find(|path| path.exists())
        .expect("faketime must be installed (scripts/test installs it)")
}

/// Starts the api binary with its clock moved by `skew` (libfaketime's
/// notation: `+4m`, `-10m`, `-36d`), preloaded into the api itself rather
/// than through the `faketime` wrapper, whose child would outlive the
/// test; monotonic time stays true, so that timers and timeouts behave.
async fn skewed_api(services: &Services, skew: &str) -> (String, Child) {
    let library = libfaketime();
    let library = library.to_str().expect("a UTF-8 path");
    services
        .spawn_api_process(&[
            ("LD_PRELOAD", library),
            ("FAKETIME", skew),
            ("DONT_FAKE_MONOTONIC", "1"),
        ])
        .await
}

fn instant(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an RFC 3339 time, not {value}"))
}

#[tokio::test]
async fn replicas_with_wrong_clocks_stamp_events_by_the_clock_they_share() {
    let env = TestEnv::new().await;
    let services = services(&env);
    let http = client();
    let mut replicas = Vec::new();
    for skew in ["+4m", "-10m", "-36d"] {
        let (base, process) = skewed_api(&services, skew).await;
        replicas.push((skew, base, process));
    }
    let mut worker = services.spawn_pipeline("clocks", &[]);

    for (skew, base, _) in &replicas {
        // Without a timestamp, and with an accurate one (which a replica
        // 10 minutes behind used to refuse as more than 5 minutes ahead).
        let tenant = format!("clock{}", skew.replace(['+', '-'], "_"));
        let accurate = Utc::now().to_rfc3339();
        for body in [
            json!({"tenant": tenant, "feature": "gpt-4o", "tokens": 10, "id": "unstamped"}),
            json!({"tenant": tenant, "feature": "gpt-4o", "tokens": 5, "id": "stamped",
                   "timestamp": accurate}),
        ] {
            expect_status(http.post(format!("{base}/api/events")).json(&body), 202).await;
        }
        let metrics = scrape(&format!("{base}/metrics")).await;
        let offset = sample(&metrics, "flagmeter_clock_offset_seconds")
            .unwrap_or_else(|| panic!("{skew}: no clock offset gauge"));
        assert!(
            offset.abs() > 60.0,
            "{skew}: the replica reports its clock is off ({offset} s)"
        );
    }
    assert!(
        services.drained(Duration::from_secs(60)).await,
        "the stream drains"
    );

    let now = Utc::now();
    let near_now = |t: DateTime<Utc>| (t - now).abs() < chrono::TimeDelta::seconds(30);
    for (skew, base, _) in &replicas {
        let tenant = format!("clock{}", skew.replace(['+', '-'], "_"));
        let page: Value =
            expect_status(http.get(format!("{base}/api/events?tenant={tenant}")), 200)
                .await
                .json()
                .await
                .unwrap();
        let events = page["events"].as_array().unwrap();
        assert_eq!(events.len(), 2, "{skew}: both events counted: {page}");
        for event in events {
            let occurred = instant(&event["occurredAt"]);
            let received = instant(&event["receivedAt"]);
            assert!(
                near_now(occurred) && near_now(received),
                "{skew}: stamped by the shared clock, not the replica's: {event}"
            );
        }
    }
    worker.kill().await.ok();
}
