//! The deployment files against the binaries: the compose files validate
//! against the Compose Specification's schema, the dashboard parses, every
//! metric a dashboard panel or an alert rule queries is exported by a
//! running api or pipeline, both metrics endpoints and the Prometheus
//! configuration and alert rules pass `promtool` (the rules' unit tests
//! included), and every variable compose or `.env.example` sets is one the
//! binaries read. No Docker engine is needed; `promtool` comes from
//! Debian's `prometheus` package (scripts/test installs it).

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

/// The `expr` of every alert rule in `infra/prometheus/alerts.yml`.
fn alert_rule_exprs() -> Vec<String> {
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&repo_file("infra/prometheus/alerts.yml")).unwrap();
    rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_sequence().unwrap())
        .map(|rule| rule["expr"].as_str().unwrap().to_owned())
        .collect()
}

/// Runs `promtool` with `args` (and `stdin`, if any) in the repository's
/// root; returns whether it succeeded, and what it said.
fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut child = std::process::Command::new("promtool")
        .args(args)
        .current_dir(root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs: install Debian's prometheus package (scripts/test does)");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
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
async fn every_dashboard_and_alert_query_names_a_metric_the_binaries_export_as_promtool_wants() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("infra/grafana/dashboards/flagmeter.json")).unwrap();
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(used.len() > 15, "the dashboard queries metrics: {used:?}");
    let rules: BTreeSet<String> = alert_rule_exprs()
        .iter()
        .flat_map(|e| metric_names(e))
        .collect();
    assert!(rules.len() >= 8, "the alert rules query metrics: {rules:?}");
    let used: BTreeSet<String> = used.union(&rules).cloned().collect();

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
    for destination in ["slack", "webhook"] {
        let delivered =
            format!("flagmeter_alerts_delivered_total{{destination=\"{destination}\"}} 0");
        assert!(pipeline_metrics.contains(&delivered), "{pipeline_metrics}");
    }
    for (endpoint, metrics) in [("api", &api_metrics), ("pipeline", &pipeline_metrics)] {
        let (passed, said) = promtool(&["check", "metrics"], Some(metrics));
        assert!(
            passed,
            "promtool check metrics on the {endpoint}'s: {said}\n{metrics}"
        );
        assert!(
            metrics.contains("# TYPE process_cpu_seconds_total counter\n"),
            "{endpoint}: {metrics}"
        );
    }

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
fn the_prometheus_configuration_and_alert_rules_pass_promtool_and_their_unit_tests() {
    // `check config` checks the rule files it loads too.
    for args in [
        &["check", "config", "infra/prometheus/prometheus.yml"][..],
        &["check", "rules", "infra/prometheus/alerts.yml"],
        &["test", "rules", "infra/prometheus/alerts.test.yml"],
    ] {
        let (passed, said) = promtool(args, None);
        assert!(passed, "promtool {args:?}: {said}");
    }
    let config: serde_yaml::Value =
        serde_yaml::from_str(&repo_file("infra/prometheus/prometheus.yml")).unwrap();
    assert_eq!(config["rule_files"][0], "alerts.yml");
    let compose = compose_file("docker-compose.yml");
    let mounts = serde_yaml::to_string(&compose["services"]["prometheus"]["volumes"]).unwrap();
    assert!(
        mounts.contains("./infra/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro"),
        "beside prometheus.yml in the container: {mounts}"
    );
}

/// The query of the dashboard panel titled `title` whose legend is `legend`.
fn panel_query(title: &str, legend: &str) -> String {
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("infra/grafana/dashboards/flagmeter.json")).unwrap();
    // The item of the array `list` whose `key` is `value`.
    let find = |list: &serde_json::Value, key: &str, value: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|item| item[key] == value)
            .cloned()
            .unwrap_or_else(|| panic!("no {key} {value} in {list}"))
    };
    let panel = find(&dashboard["panels"], "title", title);
    let target = find(&panel["targets"], "legendFormat", legend);
    target["expr"].as_str().unwrap().to_owned()
}

#[test]
fn every_panel_the_operations_guide_describes_is_on_the_dashboard() {
    let bullet = regex::Regex::new(r"(?m)^- \*([^*]+)\*:").unwrap();
    let guide = repo_file("docs/operations.md");
    let described: BTreeSet<&str> = bullet
        .captures_iter(&guide)
        .map(|c| c.get(1).unwrap().as_str())
        .collect();
    assert!(described.len() >= 20, "{described:?}");
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("infra/grafana/dashboards/flagmeter.json")).unwrap();
    let titles: BTreeSet<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    let missing: Vec<&&str> = described.difference(&titles).collect();
    assert!(
        missing.is_empty(),
        "described in docs/operations.md, not on the dashboard: {missing:?}"
    );
}

#[test]
fn the_batch_size_p50_reads_one_when_most_batches_hold_one_entry() {
    // 8 of every 10 batches hold one entry, 2 hold a few: Prometheus
    // interpolates within the lowest bucket, (0, 1], and the query alone
    // read 0.625.
    let query = panel_query("Batch size P50 / P99", "P50").replace("$__rate_interval", "5m");
    let test = format!(
        r#"rule_files: []
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'flagmeter_batch_size_events_bucket{{le="1"}}'
        values: '0+8x10'
      - series: 'flagmeter_batch_size_events_bucket{{le="5"}}'
        values: '0+10x10'
      - series: 'flagmeter_batch_size_events_bucket{{le="+Inf"}}'
        values: '0+10x10'
    promql_expr_test:
      - expr: '{query}'
        eval_time: 10m
        exp_samples:
          - labels: '{{}}'
            value: 1
"#
    );
    let file = std::env::temp_dir().join(format!(
        "flagmeter-batch-size-{}.yml",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::write(&file, test).unwrap();
    let (passed, said) = promtool(&["test", "rules", &file.to_string_lossy()], None);
    std::fs::remove_file(&file).ok();
    assert!(passed, "{query}: {said}");
}

/// A compose file as compose reads it: `${VAR:-default}` at its default
/// (and a required `${VAR:?...}` at a value that would pass), `$$` as `$`,
/// YAML merge keys (`<<`) applied.
fn compose_file(path: &str) -> serde_yaml::Value {
    let variable = regex::Regex::new(r"\$\{([A-Z_]+)(?::-([^}]*)|:\?[^}]*)?\}").unwrap();
    let text = repo_file(path);
    let interpolated = variable.replace_all(&text, |c: &regex::Captures| match c.get(2) {
        Some(default) => default.as_str().to_owned(),
        None => "x".repeat(32),
    });
    let mut value: serde_yaml::Value =
        serde_yaml::from_str(&interpolated.replace("$$", "$")).unwrap();
    value.apply_merge().unwrap();
    value
}

#[test]
fn the_compose_files_validate_against_the_compose_specification() {
    let schema: serde_json::Value =
        serde_json::from_str(&repo_file("system-tests/compose-spec/compose-spec.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for path in ["docker-compose.yml", "docker-compose.cluster.yml"] {
        let file = serde_json::to_value(compose_file(path)).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&file)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{path}: {errors:#?}");
    }
    let broken =
        json!({"services": {"api": {"image": "x", "restart": "sometimes", "imagee": "x"}}});
    assert!(
        !validator.is_valid(&broken),
        "the schema does refuse things"
    );
}

/// A size such as `640mb` or `1G`, in bytes.
fn bytes(size: &str) -> u64 {
    let size = size.to_ascii_lowercase();
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match &size[digits.len()..] {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        other => panic!("unit {other} of {size}"),
    };
    digits.parse::<u64>().unwrap() * unit
}

/// A Valkey command line's `--maxmemory` (in bytes) and `--maxmemory-policy`.
fn valkey_memory(command: &str) -> (u64, String) {
    let words: Vec<&str> = command.split_whitespace().collect();
    let after = |flag: &str| {
        let at = words.iter().position(|w| *w == flag);
        at.and_then(|i| words.get(i + 1))
            .unwrap_or_else(|| panic!("{flag} in {command}"))
    };
    (
        bytes(after("--maxmemory")),
        after("--maxmemory-policy").to_string(),
    )
}

/// A service's command as one line of words.
fn command_line(service: &serde_yaml::Value) -> String {
    match &service["command"] {
        serde_yaml::Value::Sequence(words) => words
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(" "),
        other => other.as_str().unwrap().to_owned(),
    }
}

#[test]
fn the_compose_file_describes_the_whole_scalable_stack() {
    let compose = compose_file("docker-compose.yml");
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
    let valkey = &compose["services"]["valkey"];
    let valkey_command = command_line(valkey);
    assert!(
        valkey_command.contains("--appendonly yes") && valkey_command.contains("always"),
        "{valkey_command}"
    );
    let limit = bytes(
        valkey["deploy"]["resources"]["limits"]["memory"]
            .as_str()
            .unwrap(),
    );
    let (maxmemory, policy) = valkey_memory(&valkey_command);
    assert!(
        maxmemory <= limit * 3 / 4,
        "room below the container's limit for an AOF rewrite: {maxmemory} of {limit}"
    );
    assert_eq!(policy, "noeviction", "an evicted stream is lost events");
    for (name, service) in services {
        for port in service["ports"].as_sequence().into_iter().flatten() {
            assert!(
                port.as_str().unwrap().starts_with("127.0.0.1:"),
                "{name:?} publishes {port:?} beyond loopback by default"
            );
        }
    }
    assert!(
        compose["services"]["pipeline"]["depends_on"]
            .get("api")
            .is_none(),
        "the pipeline needs no api"
    );
    let header = repo_file("docker-compose.yml");
    assert!(
        header.contains("least 32 characters") && !header.contains("least 20"),
        "the admin key's length as the api checks it"
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
                "PUBLISH_ADDR",
                "VALKEY_CLUSTER_NET",
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
fn the_cluster_override_joins_three_nodes_at_fixed_addresses_and_points_the_stack_at_them() {
    let compose = compose_file("docker-compose.cluster.yml");
    let subnet = compose["networks"]["default"]["ipam"]["config"][0].clone();
    let prefix = |cidr: &serde_yaml::Value| {
        let cidr = cidr.as_str().unwrap();
        let (address, bits) = cidr.split_once('/').unwrap();
        let address: std::net::Ipv4Addr = address.parse().unwrap();
        (u32::from(address), bits.parse::<u32>().unwrap())
    };
    let within = |ip: u32, (network, bits): (u32, u32)| (ip ^ network) >> (32 - bits) == 0;
    let mut addresses = BTreeSet::new();
    for node in ["valkey", "valkey-2", "valkey-3"] {
        let service = &compose["services"][node];
        let command = command_line(service);
        assert!(
            command.contains("--cluster-enabled yes") && command.contains("always"),
            "{node}: {command}"
        );
        let (maxmemory, policy) = valkey_memory(&command);
        assert!(maxmemory < bytes("1G") && policy == "noeviction", "{node}");
        let address = service["networks"]["default"]["ipv4_address"]
            .as_str()
            .unwrap_or_else(|| panic!("{node} has a fixed address, which its peers record"));
        let ip = u32::from(address.parse::<std::net::Ipv4Addr>().unwrap());
        assert!(within(ip, prefix(&subnet["subnet"])), "{node} {address}");
        assert!(
            !within(ip, prefix(&subnet["ip_range"])),
            "{node} {address}: no other container may be given it"
        );
        addresses.insert(address.to_owned());
    }
    assert_eq!(addresses.len(), 3);
    let setup = command_line(&compose["services"]["valkey-cluster"]);
    assert!(
        setup.contains("--cluster create") && setup.contains("cluster meet"),
        "creates the cluster, or repairs its peers' addresses: {setup}"
    );
    let nodes = compose["services"]["valkey-cluster"]["environment"]["NODES"]
        .as_str()
        .unwrap();
    assert_eq!(
        nodes
            .split_whitespace()
            .map(str::to_owned)
            .collect::<BTreeSet<_>>(),
        addresses
    );
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
