//! The services under measurement, started fresh for each run: a new
//! database and stream, the api and pipeline replicas from the release
//! build, and (with `--cluster`) a 3-master Redis Cluster, testkit's, for
//! the whole bench. Every process the bench starts is stopped by it (by
//! pid) and killed if the bench itself ends first.

use std::{process::Stdio, time::Duration};

use anyhow::{Context, bail};
use redis::streams::StreamInfoGroupsReply;
use sea_orm::DatabaseConnection;
use stream::{ConnectOptions, Shards, Target, Valkey};
use testkit::cluster::Cluster;
use tokio::process::{Child, Command};

use crate::{cli::Settings, postgres};

/// The consumer group the replicas share.
const GROUP: &str = "rollups";

/// What stays up across runs.
pub struct Bench {
    pub settings: Settings,
    pub admin: DatabaseConnection,
    /// Loopback only, proxies from the environment ignored.
    pub http: reqwest::Client,
    valkey_url: String,
    /// Held so that the cluster lives as long as the bench.
    cluster: Option<Cluster>,
}

impl Bench {
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&settings.out)
            .with_context(|| format!("creating {}", settings.out.display()))?;
        for binary in ["flagmeter-api", "flagmeter-pipeline", "flagmeter-load"] {
            let path = settings.bin.join(binary);
            if !path.is_file() {
                bail!(
                    "{} is missing: cargo build --release -p api -p pipeline -p load-test",
                    path.display()
                );
            }
        }
        let admin = postgres::admin(&settings.postgres).await?;
        let cluster = if settings.cluster {
            let cluster = Cluster::start(3, 0).await;
            let ports: Vec<String> = cluster.nodes.iter().map(|n| n.port.to_string()).collect();
            eprintln!(
                "flagmeter-bench: cluster of 3 masters on ports {}",
                ports.join(" ")
            );
            Some(cluster)
        } else {
            None
        };
        let valkey_url = cluster
            .as_ref()
            .map_or_else(|| settings.valkey_url.clone(), Cluster::url);
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            settings,
            admin,
            http,
            valkey_url,
            cluster,
        })
    }

    /// A new database and stream for one run.
    pub async fn fresh(&self) -> anyhow::Result<Run<'_>> {
        postgres::recreate(&self.admin, &self.settings.database).await?;
        let stream = format!("flagmeter-bench:{}", uuid::Uuid::now_v7().simple());
        Ok(Run {
            bench: self,
            shards: Shards::new(&stream, GROUP, self.settings.shards),
            stream,
            database_url: format!("{}/{}", self.settings.postgres, self.settings.database),
            env: Vec::new(),
        })
    }

    async fn valkey(&self) -> anyhow::Result<Valkey> {
        Ok(Target::parse(&self.valkey_url, self.cluster.is_some())?
            .connect(ConnectOptions::COMMANDS)
            .await?)
    }

    /// Script calls and appends (`EVALSHA`, `EVAL`, `XADD`) the
    /// Valkey/Redis node has processed since it started: the round trips
    /// of an ingest and of a reservation (`total_commands_processed` would
    /// also count each command a script runs). `None` on a cluster, whose
    /// nodes each count their own.
    pub async fn valkey_round_trips(&self) -> anyhow::Result<Option<u64>> {
        if self.cluster.is_some() {
            return Ok(None);
        }
        let mut conn = redis::Client::open(self.valkey_url.as_str())?
            .get_multiplexed_async_connection()
            .await?;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await?;
        Ok(Some(round_trips(&info)))
    }

    /// The pid of the Valkey/Redis node (on a cluster, the first node's):
    /// its CPU counts towards an event's cost.
    pub async fn valkey_pid(&self) -> anyhow::Result<u32> {
        let first = self.valkey_url.split(',').next().unwrap_or_default();
        let mut conn = redis::Client::open(first)?
            .get_multiplexed_async_connection()
            .await?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await?;
        info.lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .and_then(|pid| pid.trim().parse().ok())
            .context("INFO server names no process_id")
    }

    /// On a cluster, which master holds each shard (`{tag}@port`), once the
    /// shards exist.
    pub async fn shard_masters(&self, shards: &Shards) -> Option<String> {
        let cluster = self.cluster.as_ref()?;
        let mut where_ = Vec::new();
        for keys in shards.all() {
            let port = cluster.master_of(&keys.stream).await;
            let tag = keys.stream.rsplit(':').next().unwrap_or_default();
            where_.push(format!(
                "{tag}@{}",
                port.map_or("?".to_owned(), |p| p.to_string())
            ));
        }
        Some(format!("shards on masters: {}", where_.join(" ")))
    }

    /// A report or log file of this bench.
    pub fn out(&self, name: &str) -> std::path::PathBuf {
        self.settings.out.join(name)
    }
}

/// One run's database and stream, and how to start services on them.
pub struct Run<'a> {
    pub bench: &'a Bench,
    pub stream: String,
    pub shards: Shards,
    pub database_url: String,
    /// Settings of this run beyond the shared ones (both binaries get them).
    env: Vec<(String, String)>,
}

impl Run<'_> {
    /// Adds an environment variable for the api and the replicas.
    pub fn with_env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    fn command(&self, binary: &str) -> Command {
        let settings = &self.bench.settings;
        let mut command = Command::new(settings.bin.join(binary));
        command
            .env("DATABASE_URL", &self.database_url)
            .env("VALKEY_URL", &self.bench.valkey_url)
            .env(
                "FLAGMETER_VALKEY_CLUSTER",
                self.bench.cluster.is_some().to_string(),
            )
            .env("FLAGMETER_STREAM", &self.stream)
            .env("FLAGMETER_GROUP", GROUP)
            .env("FLAGMETER_STREAM_SHARDS", settings.shards.to_string())
            // The benchmarks measure the api, not its rate limit.
            .env("FLAGMETER_RATE_LIMIT_PER_SEC", "0")
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// The api on the bench port, once it answers, with a key of `scopes`
    /// made in the database as in production.
    pub async fn start_api(&self, scopes: &[&str]) -> anyhow::Result<Api> {
        let port = self.bench.settings.port;
        let url = format!("http://127.0.0.1:{port}");
        let service = Service::spawn(
            self.command("flagmeter-api")
                .env("FLAGMETER_API_ADDR", format!("127.0.0.1:{port}"))
                .env("FLAGMETER_STREAM_HIGH_WATER", "100000000"),
        )?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let health = self
                .bench
                .http
                .get(format!("{url}/api/health"))
                .send()
                .await;
            if health.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the api did not answer on {url}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut keys = self.command("flagmeter-api");
        keys.args(["keys", "create", "--name", "bench"]);
        for scope in scopes {
            keys.args(["--scope", scope]);
        }
        let created = keys
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .await?;
        if !created.status.success() {
            bail!("flagmeter-api keys create failed");
        }
        let key = String::from_utf8(created.stdout)?.trim().to_owned();
        Ok(Api { service, url, key })
    }

    /// Replica `n` (from 1): consumer `bench-n`, metrics on the metrics
    /// port + n.
    pub fn start_worker(&self, n: usize) -> anyhow::Result<Service> {
        let port = self.metrics_port(n);
        Service::spawn(
            self.command("flagmeter-pipeline")
                .env("FLAGMETER_METRICS_ADDR", format!("127.0.0.1:{port}"))
                .env("FLAGMETER_CONSUMER", format!("bench-{n}")),
        )
    }

    pub fn metrics_port(&self, n: usize) -> u16 {
        let offset = u16::try_from(n).unwrap_or(u16::MAX);
        self.bench.settings.metrics_port.saturating_add(offset)
    }

    /// Entries in every shard together.
    pub async fn stream_len(&self) -> anyhow::Result<u64> {
        let mut conn = self.bench.valkey().await?;
        let mut total = 0;
        for keys in self.shards.all() {
            let len: u64 = redis::cmd("XLEN")
                .arg(&keys.stream)
                .query_async(&mut conn)
                .await?;
            total += len;
        }
        Ok(total)
    }

    /// Entries ever appended to the stream, every shard together
    /// (`entries-added` of `XINFO STREAM`, which trimming does not lower).
    pub async fn entries_added(&self) -> anyhow::Result<u64> {
        let mut conn = self.bench.valkey().await?;
        let mut total = 0;
        for keys in self.shards.all() {
            let info: std::collections::HashMap<String, redis::Value> = redis::cmd("XINFO")
                .arg("STREAM")
                .arg(&keys.stream)
                .query_async(&mut conn)
                .await?;
            let added = info
                .get("entries-added")
                .context("XINFO STREAM without entries-added (Redis 7 or Valkey needed)")?;
            total += redis::from_redis_value_ref::<u64>(added)?;
        }
        Ok(total)
    }

    /// Until every shard's group has nothing undelivered and nothing
    /// pending. Nothing is added during a drain, so a shard once idle stays
    /// idle; one connection looks every 50 ms (a process per look would
    /// cost a share of the two cores being measured).
    pub async fn wait_idle(&self) -> anyhow::Result<()> {
        let mut conn = self.bench.valkey().await?;
        for keys in self.shards.all() {
            loop {
                let groups: Result<StreamInfoGroupsReply, _> = redis::cmd("XINFO")
                    .arg("GROUPS")
                    .arg(&keys.stream)
                    .query_async(&mut conn)
                    .await;
                let idle = groups.is_ok_and(|reply| {
                    reply
                        .groups
                        .iter()
                        .any(|g| g.name == keys.group && g.pending == 0 && g.lag == Some(0))
                });
                if idle {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}

/// A process the bench started.
pub struct Service {
    child: Child,
    pub pid: u32,
}

impl Service {
    pub fn spawn(command: &mut Command) -> anyhow::Result<Self> {
        let child = command.spawn().context("starting a service")?;
        let pid = child.id().context("a started process has a pid")?;
        Ok(Self { child, pid })
    }

    /// SIGTERM, as an orchestrator stops it, then waits for the exit (a
    /// SIGKILL after 10 s).
    pub async fn stop(mut self) {
        signal(self.pid, "-TERM");
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await.ok();
        }
    }
}

/// Sends `signal` (`-TERM`, `-STOP`, `-CONT`) to one process the bench
/// started.
pub fn signal(pid: u32, signal: &str) {
    std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .ok();
}

/// The api of a run and a key for it.
pub struct Api {
    pub service: Service,
    pub url: String,
    pub key: String,
}

/// The calls of `EVALSHA`, `EVAL` and `XADD` in `INFO commandstats`.
fn round_trips(commandstats: &str) -> u64 {
    commandstats
        .lines()
        .filter_map(|line| {
            let (command, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            ["evalsha", "eval", "xadd"]
                .contains(&command)
                .then_some(())?;
            stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_are_the_script_calls_and_appends() {
        let info = "# Commandstats\r\n\
                    cmdstat_evalsha:calls=10,usec=5,usec_per_call=0.5\r\n\
                    cmdstat_hset:calls=99,usec=5,usec_per_call=0.05\r\n\
                    cmdstat_xadd:calls=7,usec=5,usec_per_call=0.7\r\n";
        assert_eq!(round_trips(info), 17);
    }
}
