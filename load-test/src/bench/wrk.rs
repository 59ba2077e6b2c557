//! The box's limits beside the api, in one round: nginx's static 202 and
//! the api (two replicas beside it) under the same wrk 80/20 mix (`-t2
//! -c64`), then `redis-benchmark` XADD of a record-sized entry without and
//! with pipelining. The ratio api ÷ nginx within a round is what reads
//! through the noise of a shared machine.

use std::{process::Stdio, time::Duration};

use anyhow::{Context, bail};
use serde_json::json;
use tokio::process::Command;

use crate::{
    procfs,
    services::{Bench, Service},
    stats::{median, spread},
};

/// The mix, the same file `wrk` users run by hand.
const MIX_LUA: &str = include_str!("../../wrk/mix.lua");
const TENANTS: [&str; 3] = ["acme-corp", "globex-inc", "initech-llc"];

/// What one wrk run reported.
#[derive(Debug, Clone)]
struct Wrk {
    requests: f64,
    rps: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    non_2xx: f64,
    socket_errors: String,
}

impl Wrk {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let after = |label: &str| {
            text.lines()
                .find_map(|line| line.trim().strip_prefix(label).map(str::trim))
        };
        let percentile = |p: &str| {
            text.lines()
                .find_map(|line| line.trim().strip_prefix(p)?.split_whitespace().next())
                .and_then(milliseconds)
                .with_context(|| format!("no {p} latency in wrk's output"))
        };
        Ok(Self {
            requests: text
                .lines()
                .find(|line| line.contains(" requests in "))
                .and_then(|line| line.split_whitespace().next()?.parse().ok())
                .context("no request count in wrk's output")?,
            rps: after("Requests/sec:")
                .and_then(|v| v.parse().ok())
                .context("no Requests/sec in wrk's output")?,
            p50: percentile("50%")?,
            p90: percentile("90%")?,
            p99: percentile("99%")?,
            non_2xx: after("Non-2xx or 3xx responses:")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0),
            socket_errors: after("Socket errors:")
                .map_or("none".to_owned(), |v| v.replace(' ', "")),
        })
    }

    fn describe(&self) -> String {
        format!(
            "{:.0} req/s p50={:.2} p90={:.2} p99={:.2} ms non2xx={:.0} socket_errors={}",
            self.rps, self.p50, self.p90, self.p99, self.non_2xx, self.socket_errors
        )
    }
}

/// `1.23ms`, `850.00us`, `1.02s` in milliseconds.
fn milliseconds(value: &str) -> Option<f64> {
    let (number, scale) = if let Some(v) = value.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = value.strip_suffix("ms") {
        (v, 1.0)
    } else {
        (value.strip_suffix('s')?, 1000.0)
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// One round's figures.
struct Round {
    nginx: Wrk,
    api: Wrk,
    api_cpu_us: f64,
    xadd: f64,
    xadd_pipelined: f64,
}

pub async fn run(bench: &Bench, duration: &str) -> anyhow::Result<()> {
    let script = bench.out("mix.lua");
    std::fs::write(&script, MIX_LUA)?;
    let mut rounds = Vec::new();
    for number in 1..=bench.settings.runs {
        let nginx_port = bench.settings.port + 99;
        let nginx = start_nginx(bench, nginx_port).await?;
        let static_reply = wrk(
            &script,
            &format!("http://127.0.0.1:{nginx_port}"),
            "",
            duration,
        )
        .await;
        nginx.stop().await;
        let static_reply = static_reply?;

        let run = bench.fresh().await?;
        let api = run.start_api(&["ingest", "read"]).await?;
        let replicas = [run.start_worker(1)?, run.start_worker(2)?];
        // The mix reads these tenants' usage: they exist before it starts.
        for tenant in TENANTS {
            bench
                .http
                .post(format!("{}/api/events", api.url))
                .bearer_auth(&api.key)
                .json(&json!({"tenant": tenant, "feature": "gpt-4o", "tokens": 1}))
                .send()
                .await?;
            let url = format!("{}/api/usage/{tenant}", api.url);
            while !bench
                .http
                .get(&url)
                .bearer_auth(&api.key)
                .send()
                .await?
                .status()
                .is_success()
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let before = procfs::cpu_seconds(api.service.pid);
        let measured = wrk(&script, &api.url, &api.key, duration).await;
        let cpu = procfs::cpu_seconds(api.service.pid) - before;
        for replica in replicas {
            replica.stop().await;
        }
        api.service.stop().await;
        let measured = measured?;
        let round = Round {
            api_cpu_us: cpu * 1e6 / measured.requests.max(1.0),
            nginx: static_reply,
            api: measured,
            xadd: xadd_rate(1).await?,
            xadd_pipelined: xadd_rate(100).await?,
        };
        println!(
            "round {number}: nginx=[{}] api=[{}] api_cpu_us_per_request={:.1} xadd={:.0} xadd_p100={:.0}",
            round.nginx.describe(),
            round.api.describe(),
            round.api_cpu_us,
            round.xadd,
            round.xadd_pipelined
        );
        rounds.push(round);
    }
    print!("{}", table(&rounds));
    Ok(())
}

fn table(rounds: &[Round]) -> String {
    let cell = |f: &dyn Fn(&Round) -> f64, digits: usize| {
        let values: Vec<f64> = rounds.iter().map(f).collect();
        format!(
            "{:.digits$} ({})",
            median(&values).unwrap_or(0.0),
            spread(&values, |v| format!("{v:.digits$}"))
        )
    };
    let ratios: Vec<String> = rounds
        .iter()
        .map(|r| format!("{:.3}", r.api.rps / r.nginx.rps.max(1.0)))
        .collect();
    let ratio_values: Vec<f64> = rounds
        .iter()
        .map(|r| r.api.rps / r.nginx.rps.max(1.0))
        .collect();
    format!(
        "| figure (median of rounds, spread) | nginx static 202 | FlagMeter api |\n|---|---|---|\n\
         | req/s | {} | {} |\n| P50 ms | {} | {} |\n| P90 ms | {} | {} |\n| P99 ms | {} | {} |\n\
         | non-2xx responses | {} | {} |\n\
         - api / nginx, each round: {}; median {:.3}\n\
         - redis-benchmark XADD: {} /s; with -P 100: {} /s\n\
         - the api's CPU time per request (user + system): {} µs\n",
        cell(&|r| r.nginx.rps, 0),
        cell(&|r| r.api.rps, 0),
        cell(&|r| r.nginx.p50, 2),
        cell(&|r| r.api.p50, 2),
        cell(&|r| r.nginx.p90, 2),
        cell(&|r| r.api.p90, 2),
        cell(&|r| r.nginx.p99, 2),
        cell(&|r| r.api.p99, 2),
        cell(&|r| r.nginx.non_2xx, 0),
        cell(&|r| r.api.non_2xx, 0),
        ratios.join(", "),
        median(&ratio_values).unwrap_or(0.0),
        cell(&|r| r.xadd, 0),
        cell(&|r| r.xadd_pipelined, 0),
        cell(&|r| r.api_cpu_us, 1),
    )
}

/// One wrk run of the mix against `url`.
async fn wrk(
    script: &std::path::Path,
    url: &str,
    key: &str,
    duration: &str,
) -> anyhow::Result<Wrk> {
    let output = Command::new("wrk")
        .args(["-t2", "-c64", &format!("-d{duration}"), "--latency", "-s"])
        .arg(script)
        .arg(url)
        .env("FLAGMETER_API_KEY", key)
        .stdin(Stdio::null())
        .output()
        .await
        .context("wrk must be installed (scripts/bench installs it)")?;
    Wrk::parse(&String::from_utf8_lossy(&output.stdout))
}

/// nginx answering a static 202 to everything on `port`, from a
/// configuration under the bench's output.
async fn start_nginx(bench: &Bench, port: u16) -> anyhow::Result<Service> {
    let dir = std::path::absolute(bench.out("nginx"))?;
    std::fs::create_dir_all(&dir)?;
    let d = dir.display();
    let config = format!(
        "worker_processes 2;\ndaemon off;\npid {d}/nginx.pid;\nerror_log stderr error;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};\n  \
         uwsgi_temp_path {d}; scgi_temp_path {d};\n  \
         server {{ listen 127.0.0.1:{port}; location / {{ return 202 '{{\"success\":true}}'; }} }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), config)?;
    let program = if std::path::Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    };
    let nginx = Service::spawn(
        Command::new(program)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(&dir)
            .stdout(Stdio::null())
            .kill_on_drop(true),
    )?;
    for _ in 0..50 {
        if bench
            .http
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .is_ok()
        {
            return Ok(nginx);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("nginx did not start on port {port}")
}

/// `redis-benchmark` XADD of a 120-byte entry at 127.0.0.1:6379, with
/// `pipeline` commands per round trip: requests per second.
async fn xadd_rate(pipeline: u32) -> anyhow::Result<f64> {
    let key = format!("flagmeter-bench:xadd:{}", uuid::Uuid::now_v7().simple());
    let output = Command::new("redis-benchmark")
        .args([
            "-q",
            "-n",
            "400000",
            "-c",
            "64",
            "-P",
            &pipeline.to_string(),
            "XADD",
            &key,
            "*",
            "e",
        ])
        .arg("x".repeat(120))
        .stdin(Stdio::null())
        .output()
        .await
        .context("redis-benchmark must be installed (scripts/bench installs it)")?;
    let text = String::from_utf8_lossy(&output.stdout).replace('\r', "\n");
    let rate = text
        .lines()
        .rev()
        .filter_map(|line| line.split_once(" requests per second"))
        .find_map(|(before, _)| before.rsplit(' ').next()?.parse().ok())
        .context("no rate in redis-benchmark's output")?;
    let mut conn = redis::Client::open("redis://127.0.0.1:6379")?
        .get_multiplexed_async_connection()
        .await?;
    redis::cmd("DEL")
        .arg(&key)
        .query_async::<()>(&mut conn)
        .await?;
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_read_with_its_units() {
        let text = "Running 10s test @ http://127.0.0.1:3700\n  Latency Distribution\n     50%    1.50ms\n     \
                    75%    2.00ms\n     90%  850.00us\n     99%    1.02s\n  81234 requests in 10.00s, 9.1MB read\n  \
                    Socket errors: connect 0, read 0, write 0, timeout 3\n  Non-2xx or 3xx responses: 12\n\
                    Requests/sec:   8123.40\n";
        let wrk = Wrk::parse(text).unwrap();
        assert_eq!(wrk.requests, 81234.0);
        assert_eq!(wrk.rps, 8123.4);
        assert_eq!((wrk.p50, wrk.p90, wrk.p99), (1.5, 0.85, 1020.0));
        assert_eq!(wrk.non_2xx, 12.0);
        assert_eq!(wrk.socket_errors, "connect0,read0,write0,timeout3");
    }
}
