//! The real `flagmeter-load` binary against a real api and pipeline started
//! in this process (own PostgreSQL database, own Valkey stream): a short
//! low-rate constant run whose audit must find every accepted event counted.

use std::time::Duration;

use api::{config::ApiConfig, startup::Application};
use clap::Parser;
use serde_json::Value;
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;

/// The api's configuration as its command line builds it.
#[derive(Parser)]
struct ApiArgs {
    #[command(flatten)]
    config: ApiConfig,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_constant_run_is_audited_as_counted_in_full() {
    let env = TestEnv::new().await;
    // The api's own defaults, so that settings added later need nothing
    // here; then this test's port, database and stream.
    let ApiArgs { mut config } = ApiArgs::try_parse_from(["flagmeter-api"]).unwrap();
    config.api_addr = "127.0.0.1:0".parse().unwrap();
    config.valkey = env.valkey_args();
    config.database = env.database_args();
    let admin_key = "load-smoke-admin-key-that-is-not-secret";
    config.auth.admin_key = Some(admin_key.into());
    let app = Application::build(config).await.expect("the api builds");
    let url = format!("http://{}", app.addr());
    let stop_api = CancellationToken::new();
    let api = tokio::spawn(app.run_until_stopped(stop_api.clone()));
    let pipeline = env.spawn_pipeline("load-smoke");

    let report = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("flagmeter-load-smoke-{}.json", std::process::id()));
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_flagmeter-load"))
        .args(["--url", &url, "--profile", "constant", "--rate", "200"])
        .args(["--api-key", admin_key])
        .args(["--duration", "5s", "--connections", "32"])
        .args(["--audit", "--drain-timeout", "30s", "--report"])
        .arg(&report)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("the run ends by itself")
        .expect("flagmeter-load runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stderr}{stdout}");
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{stderr}",
        output.status
    );

    let json: Value = serde_json::from_slice(&std::fs::read(&report).expect("report written"))
        .expect("the report is JSON");
    std::fs::remove_file(&report).ok();
    let audit = &json["audit"];
    assert_eq!(audit["match"], true, "{json:#}");
    let expected = audit["expected"].as_i64().expect("expected tokens");
    assert!(expected > 0, "{json:#}");
    assert_eq!(audit["counted"].as_i64(), Some(expected));
    assert_eq!(
        audit["tenants"].as_object().map(|t| t.len()),
        Some(3),
        "{json:#}"
    );
    // 200 req/s for 5 s; a few may be late on a busy machine, none lost.
    let requests = json["requests"].as_u64().expect("requests");
    assert_eq!(requests + json["not_sent"].as_u64().unwrap_or(0), 1000);
    assert!(json["events_accepted"].as_u64() > Some(0));
    assert_eq!(json["errors"]["total"], 0, "{json:#}");
    assert!(json["latency_ms"]["p99"].as_f64() > Some(0.0));
    assert!(stdout.contains("audit: match"), "{stdout}");

    pipeline.stop().await;
    stop_api.cancel();
    api.await.unwrap().unwrap();
}
