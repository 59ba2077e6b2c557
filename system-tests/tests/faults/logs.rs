//! What the real binaries write to their logs: never a key, never a webhook
//! URL, and never a client's string unescaped (one JSON object per line, no
//! terminal escape sequences), however hostile the requests.

use std::{path::Path, process::Stdio, time::Duration};

use serde_json::{Value, json};
use testkit::TestEnv;
use tokio::process::Command;

use crate::{
    services,
    support::{bin, expect_status, free_port},
};

/// Reads a log file and checks every line.
fn assert_clean(path: &Path, secrets: &[&str]) -> String {
    let log = std::fs::read(path).unwrap();
    assert!(
        !log.contains(&0x1b),
        "{}: a raw escape character",
        path.display()
    );
    let log = String::from_utf8(log).unwrap();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<Value>(line).unwrap_or_else(|err| {
            panic!("{}: not one JSON object ({err}): {line}", path.display())
        });
    }
    for secret in secrets {
        assert!(
            !log.contains(secret),
            "{}: a secret is logged: {secret}",
            path.display()
        );
    }
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_hold_no_secrets_and_escape_what_clients_send() {
    let env = TestEnv::new().await;
    let stack = services(&env);
    let scratch =
        std::env::temp_dir().join(format!("flagmeter-logs-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&scratch).unwrap();
    let admin_key = format!("admin-{}", uuid::Uuid::now_v7().simple());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let api_log = scratch.join("api.log");
    let mut api = Command::new(bin("flagmeter-api"))
        .env("DATABASE_URL", &stack.database_url)
        .env("VALKEY_URL", &stack.valkey_url)
        .env("FLAGMETER_STREAM", &stack.stream)
        .env("FLAGMETER_GROUP", &stack.group)
        .env("FLAGMETER_API_ADDR", format!("127.0.0.1:{port}"))
        .env("FLAGMETER_ADMIN_KEY", &admin_key)
        .env("FLAGMETER_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*")
        .env("FLAGMETER_WEBHOOK_ALLOW_INSECURE", "true")
        .env("FLAGMETER_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&api_log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let consumer = format!("logs-{}", uuid::Uuid::now_v7().simple());
    let mut worker = stack.spawn_pipeline(
        &consumer,
        &[("FLAGMETER_LOG_FORMAT", "json"), ("RUST_LOG", "debug")],
    );
    let http = reqwest::Client::new();
    let admin = |request: reqwest::RequestBuilder| request.bearer_auth(&admin_key).send();
    testkit::eventually("the api started", Duration::from_secs(30), || async {
        http.get(format!("{base}/api/ready")).send().await.map(drop)
    })
    .await;

    // A key, used; a wrong key; a webhook whose URL is a secret, tested and
    // then used by an alert that cannot be delivered (nothing listens).
    let created: Value = admin(
        http.post(format!("{base}/api/keys"))
            .json(&json!({"name": "k", "scopes": ["ingest"]})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let wrong_key = format!("fmk_{}", "e".repeat(64));
    let webhook_secret = format!("XOXB{}", uuid::Uuid::now_v7().simple());
    let webhook = format!(
        "http://127.0.0.1:{}/services/T0/B0/{webhook_secret}",
        free_port()
    );
    for (request, status) in [
        (
            http.put(format!("{base}/api/tenants/acme"))
                .json(&json!({"monthlyQuota": 100, "alertThresholds": [80]})),
            201,
        ),
        (
            http.put(format!("{base}/api/tenants/acme/slack-webhook"))
                .json(&json!({"url": webhook})),
            201,
        ),
        (
            http.post(format!("{base}/api/tenants/acme/slack-webhook/test")),
            200,
        ),
    ] {
        expect_status(request.bearer_auth(&admin_key), status).await;
    }
    let post_event = |event: Value| {
        let request = http.post(format!("{base}/api/events")).bearer_auth(&key);
        let request = request.json(&event);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let event = json!({"tenant": "acme", "feature": "gpt-4o", "tokens": 90});
    assert_eq!(post_event(event).await, 202);
    let refused = http.get(format!("{base}/api/usage/acme"));
    expect_status(refused.bearer_auth(&wrong_key), 401).await;

    // Hostile strings: escapes and line breaks in a path and in a body.
    let path = http.get(format!(
        "{base}/api/usage/%1B%5B31mred%0A%7B%22forged%22%3A1%7D"
    ));
    expect_status(path.bearer_auth(&admin_key), 400).await;
    let hostile = json!({"tenant": "\u{1b}[31mred\n{\"forged\":1}", "feature": "\u{1b}]0;title\u{7}", "tokens": 1});
    assert_eq!(post_event(hostile).await, 400);

    // Wait until the pipeline has tried (and failed) to deliver the alert.
    testkit::eventually("a delivery attempt", Duration::from_secs(30), || async {
        let alerts: Value = admin(http.get(format!("{base}/api/tenants/acme/alerts")))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if alerts[0]["attempts"].as_i64().unwrap_or(0) >= 1 {
            Ok(())
        } else {
            Err(alerts)
        }
    })
    .await;
    api.kill().await.unwrap();
    worker.kill().await.unwrap();

    let secrets = [
        admin_key.as_str(),
        &key,
        &key[4..],
        &wrong_key,
        &webhook_secret,
    ];
    let api_lines = assert_clean(&api_log, &secrets);
    assert!(api_lines.contains("/api/events"), "requests are logged");
    let pipeline_log = std::env::temp_dir().join(format!("flagmeter-{consumer}.log"));
    let pipeline_lines = assert_clean(&pipeline_log, &secrets);
    assert!(
        pipeline_lines.contains("quota alert not delivered"),
        "{pipeline_lines}"
    );
    std::fs::remove_dir_all(&scratch).ok();
    std::fs::remove_file(&pipeline_log).ok();
}
