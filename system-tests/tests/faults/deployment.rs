//! The deployment files against the binaries: the compose file and the
//! dashboard parse, every metric a dashboard panel queries is exported by a
//! running api or pipeline, and every variable compose or `.env.example` sets
//! is one the binaries read. No Docker engine is needed.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    time::Duration,
};

use serde_json::json;
use testkit::{TestEnv, env as testing};

use crate::support::{Services, bin, client, free_port};

fn repo_file(path: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// Metric names a PromQL expression uses, histogram suffixes removed.
fn metric_names(expr: &str) -> Vec<String> {
    let name = regex::Regex::new(r"\b((?:flagmeter|process)_[a-z0-9_]+)").unwrap();
    name.captures_iter(expr)
        .map(|c| {
            let n = &c[1];
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| n.strip_suffix(suffix))
                .unwrap_or(n)
                .to_owned()
        })
        .collect()
}

fn dashboard_exprs(panel: &serde_json::Value, out: &mut Vec<String>) {
    match panel {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                if key == "expr"
                    && let Some(expr) = value.as_str()
                {
                    out.push(expr.to_owned());
                }
                dashboard_exprs(value, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| dashboard_exprs(i, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_names_a_metric_the_binaries_export() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("infra/grafana/dashboards/flagmeter.json")).unwrap();
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(used.len() > 15, "the dashboard queries metrics: {used:?}");

    let env = TestEnv::new().await;
    let stack = Services {
        database_url: env.database_url.clone(),
        valkey_url: testing::valkey_url(),
        stream: env.stream.clone(),
        group: env.group.clone(),
    };
    let (base, _api) = stack.spawn_api().await;
    let metrics_port = free_port().to_string();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let mut worker = stack.spawn_pipeline(
        "observed",
        &[
            ("FLAGMETER_METRICS_ADDR", &metrics_addr),
            ("FLAGMETER_TRIM_INTERVAL_MS", "200"),
        ],
    );
    let http = client();
    for i in 0..20 {
        let event =
            json!({"tenant": "acme", "feature": "gpt-4o", "tokens": 10, "id": i.to_string()});
        http.post(format!("{base}/api/events"))
            .json(&event)
            .send()
            .await
            .unwrap();
    }
    http.post(format!("{base}/api/events"))
        .json(&json!({"tenant": ""}))
        .send()
        .await
        .unwrap();
    http.get(format!("{base}/api/usage/acme"))
        .send()
        .await
        .unwrap();
    assert!(stack.drained(Duration::from_secs(20)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let text = |url: String| async { http.get(url).send().await.unwrap().text().await.unwrap() };
    let api_metrics = text(format!("{base}/metrics")).await;
    let pipeline_metrics = text(format!("http://{metrics_addr}/")).await;
    let exported: BTreeSet<String> = api_metrics
        .lines()
        .chain(pipeline_metrics.lines())
        .filter(|l| !l.starts_with('#'))
        .flat_map(metric_names)
        .collect();
    let missing: Vec<&String> = used.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:?}\nexported: {exported:?}"
    );
    assert!(
        api_metrics.contains(
            "flagmeter_http_requests_total{route=\"/api/events\",method=\"POST\",status=\"202\"} 20"
        ),
        "{api_metrics}"
    );
    assert!(
        pipeline_metrics.contains("flagmeter_events_counted_total 20"),
        "{pipeline_metrics}"
    );

    assert!(
        healthcheck("flagmeter-pipeline", "--metrics-addr", &metrics_addr).await,
        "the pipeline's health check passes"
    );
    worker.kill().await.unwrap();
    assert!(
        !healthcheck("flagmeter-pipeline", "--metrics-addr", &metrics_addr).await,
        "and fails once it is gone"
    );
    let api_addr = base.trim_start_matches("http://");
    assert!(
        healthcheck("flagmeter-api", "--api-addr", api_addr).await,
        "the api's health check passes"
    );
}

/// Whether `binary --healthcheck <flag> <addr>` exits 0.
async fn healthcheck(binary: &str, flag: &str, addr: &str) -> bool {
    tokio::process::Command::new(bin(binary))
        .args(["--healthcheck", flag, addr])
        .status()
        .await
        .unwrap()
        .success()
}

/// Both binaries' `--help`, one after the other.
fn binaries_help() -> String {
    ["flagmeter-api", "flagmeter-pipeline"]
        .iter()
        .map(|name| {
            let help = std::process::Command::new(bin(name))
                .arg("--help")
                .output()
                .unwrap();
            String::from_utf8(help.stdout).unwrap()
        })
        .collect()
}

/// Every variable name the binaries read, from their `--help`.
fn variables_read() -> BTreeSet<String> {
    // `[env: NAME=value]`, or `[env: NAME]` for a secret (hide_env_values).
    let env = regex::Regex::new(r"\[env: ([A-Z_]+)[=\]]").unwrap();
    let help = binaries_help();
    let mut read: BTreeSet<String> = env.captures_iter(&help).map(|c| c[1].to_owned()).collect();
    read.insert("RUST_LOG".into());
    read
}

/// The `NAME=value` lines of `.env.example` (commented ones left out).
fn env_example_values() -> BTreeMap<String, String> {
    repo_file(".env.example")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn the_compose_file_describes_the_whole_scalable_stack() {
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&repo_file("docker-compose.yml")).unwrap();
    let services = compose["services"].as_mapping().unwrap();
    for name in [
        "valkey",
        "postgres",
        "api",
        "pipeline",
        "prometheus",
        "grafana",
    ] {
        assert!(services.contains_key(name), "service {name}");
    }
    let pipeline = &compose["services"]["pipeline"];
    assert!(
        pipeline.get("container_name").is_none(),
        "a fixed name prevents --scale"
    );
    assert!(
        pipeline.get("ports").is_none(),
        "a fixed host port prevents --scale"
    );
    let postgres_command =
        serde_yaml::to_string(&compose["services"]["postgres"]["command"]).unwrap();
    assert!(
        postgres_command.contains("wal_buffers=16MB"),
        "replicas wait on the default WAL buffers: {postgres_command}"
    );
    let valkey_command = serde_yaml::to_string(&compose["services"]["valkey"]["command"]).unwrap();
    assert!(
        valkey_command.contains("appendonly") && valkey_command.contains("always"),
        "{valkey_command}"
    );

    let read = variables_read();
    for service in ["api", "pipeline"] {
        let environment = compose["services"][service]["environment"]
            .as_mapping()
            .unwrap();
        for key in environment.keys() {
            let key = key.as_str().unwrap();
            if key != "<<" {
                assert!(
                    read.contains(key),
                    "{service} sets {key}, which no binary reads"
                );
            }
        }
    }
    let anchor = compose["x-flagmeter-env"].as_mapping().unwrap();
    for key in anchor.keys() {
        let key = key.as_str().unwrap();
        assert!(
            read.contains(key),
            "x-flagmeter-env sets {key}, which no binary reads"
        );
    }
}

#[test]
fn env_example_lists_exactly_what_the_binaries_read() {
    let example = repo_file(".env.example");
    let listed: BTreeSet<String> = example
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .filter(|k| k.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !k.is_empty())
        .filter(|k| {
            ![
                "POSTGRES_PASSWORD",
                "GRAFANA_ADMIN_USER",
                "GRAFANA_ADMIN_PASSWORD",
            ]
            .contains(&k.as_str())
        })
        .collect();
    let read = variables_read();
    let unknown: Vec<_> = listed.difference(&read).collect();
    let unlisted: Vec<_> = read.difference(&listed).collect();
    assert!(
        unknown.is_empty(),
        ".env.example lists variables no binary reads: {unknown:?}"
    );
    assert!(
        unlisted.is_empty(),
        ".env.example misses variables the binaries read: {unlisted:?}"
    );
}

/// `.env.example` says it holds each variable at its default: a default
/// changed in the code and not there would mislead whoever copies it.
#[test]
fn env_example_states_each_default_the_binaries_have() {
    let stated = env_example_values();
    // `[env: NAME=value]` followed by `[default: value]` (long help puts
    // them on two lines).
    let default = regex::Regex::new(r"\[env: ([A-Z_]+)=[^\]]*\]\s*\[default: ([^\]]*)\]").unwrap();
    let help = binaries_help();
    let mut compared = 0;
    for c in default.captures_iter(&help) {
        let (name, value) = (&c[1], &c[2]);
        if let Some(example) = stated.get(name) {
            assert_eq!(example, value, "{name} in .env.example");
            compared += 1;
        }
    }
    assert!(compared >= 20, "only {compared} defaults found in --help");
}

#[test]
fn the_cluster_override_joins_three_nodes_and_points_the_stack_at_them() {
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&repo_file("docker-compose.cluster.yml")).unwrap();
    for node in ["valkey", "valkey-2", "valkey-3"] {
        let command = serde_yaml::to_string(&compose["services"][node]["command"]).unwrap();
        assert!(
            command.contains("--cluster-enabled yes") && command.contains("always"),
            "{node}: {command}"
        );
    }
    let create = serde_yaml::to_string(&compose["services"]["valkey-cluster"]["command"]).unwrap();
    assert!(create.contains("--cluster create"), "{create}");
    let read = variables_read();
    let environment = compose["x-cluster-env"].as_mapping().unwrap();
    for (key, value) in environment {
        let key = key.as_str().unwrap();
        assert!(
            read.contains(key),
            "the override sets {key}, which no binary reads"
        );
        if key == "VALKEY_URL" {
            let target = stream::Target::parse(value.as_str().unwrap(), true).unwrap();
            assert!(target.is_cluster());
        }
    }
    assert_eq!(environment["FLAGMETER_VALKEY_CLUSTER"], "true");
    for service in ["api", "pipeline"] {
        let depends = &compose["services"][service]["depends_on"]["valkey-cluster"]["condition"];
        assert_eq!(depends, "service_completed_successfully", "{service}");
    }
}
