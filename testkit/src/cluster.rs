//! A real Redis (or Valkey) Cluster for a test: `redis-server
//! --cluster-enabled yes` on free loopback ports in a temporary directory,
//! joined by `redis-cli --cluster create`, optionally with replicas. Each
//! test starts its own, so cluster tests isolate themselves like the others;
//! dropping it kills its processes (only those it started) and removes the
//! directory.

use std::{process::Stdio, time::Duration};

use redis::AsyncCommands;
use stream::{ConnectOptions, Shards, Target, Valkey};
use tokio::process::{Child, Command};

/// One node of the cluster.
pub struct Node {
    pub port: u16,
    child: Option<Child>,
}

/// A running cluster.
pub struct Cluster {
    pub nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

/// The first of `names` on the PATH (Valkey's programs, else Redis's).
pub fn installed(names: &[&str]) -> String {
    names
        .iter()
        .find(|name| {
            std::process::Command::new("which")
                .arg(name)
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .unwrap_or_else(|| panic!("one of {names:?} must be installed (scripts/test does it)"))
        .to_string()
}

/// A port that is free, and whose cluster bus port (+10,000) is too.
fn free_cluster_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let bus_free = port
            .checked_add(10_000)
            .is_some_and(|bus| std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok());
        if bus_free {
            return port;
        }
    }
}

impl Cluster {
    /// Starts `masters` masters with `replicas` replicas each and waits
    /// until the cluster is up, every slot served and every replica synced.
    pub async fn start(masters: usize, replicas: usize) -> Self {
        crate::log::init();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
        };
        for _ in 0..masters * (1 + replicas) {
            let port = free_cluster_port();
            let mut node = Node { port, child: None };
            cluster.spawn(&mut node);
            cluster.nodes.push(node);
        }
        for node in &cluster.nodes {
            crate::eventually("a cluster node answers", Duration::from_secs(10), || {
                ping(node.port)
            })
            .await;
        }
        let status = Command::new(installed(&["valkey-cli", "redis-cli"]))
            .arg("--cluster")
            .arg("create")
            .args(
                cluster
                    .nodes
                    .iter()
                    .map(|n| format!("127.0.0.1:{}", n.port)),
            )
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .expect("redis-cli runs");
        assert!(status.success(), "redis-cli --cluster create");
        cluster.wait_until_healthy(masters, replicas).await;
        cluster
    }

    fn spawn(&self, node: &mut Node) {
        let port = node.port.to_string();
        let child = Command::new(installed(&["valkey-server", "redis-server"]))
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
            .args(["--cluster-node-timeout", "2000"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the cluster node starts");
        node.child = Some(child);
    }

    /// Waits until every node reports the cluster ok, with `masters`
    /// masters each having `replicas` replicas online.
    pub async fn wait_until_healthy(&self, masters: usize, replicas: usize) {
        let ports: Vec<u16> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect();
        crate::eventually("the cluster is healthy", Duration::from_secs(60), || {
            let ports = ports.clone();
            async move {
                for port in ports {
                    let info: String = node_cmd(port, redis::cmd("CLUSTER").arg("INFO"))
                        .await
                        .map_err(|err| format!("{port}: {err}"))?;
                    if !info.contains("cluster_state:ok") {
                        return Err(format!("{port}: {info}"));
                    }
                }
                let roles = self.masters().await;
                let synced =
                    roles.len() == masters && roles.iter().all(|(_, online)| *online >= replicas);
                if synced {
                    Ok(())
                } else {
                    Err(format!("masters and their online replicas: {roles:?}"))
                }
            }
        })
        .await;
    }

    /// The seed list for `VALKEY_URL`: every node.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A cluster connection, as the api and the pipeline use.
    pub async fn connect(&self) -> Valkey {
        Target::parse(&self.url(), true)
            .expect("valid seeds")
            .connect(ConnectOptions::COMMANDS)
            .await
            .expect("the cluster answers")
    }

    /// The live masters (by port) and how many replicas each has online.
    pub async fn masters(&self) -> Vec<(u16, usize)> {
        let mut masters = Vec::new();
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let Ok(info) =
                node_cmd::<String>(node.port, redis::cmd("INFO").arg("replication")).await
            else {
                continue;
            };
            if info.contains("role:master") {
                let online = info
                    .lines()
                    .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                    .count();
                masters.push((node.port, online));
            }
        }
        masters
    }

    /// The port of the master that holds `key` (the others answer MOVED).
    pub async fn master_of(&self, key: &str) -> Option<u16> {
        for (port, _) in self.masters().await {
            let exists: Result<u64, _> = node_cmd(port, redis::cmd("EXISTS").arg(key)).await;
            if exists.is_ok_and(|n| n == 1) {
                return Some(port);
            }
        }
        None
    }

    /// Kills (SIGKILL) the master serving `key`, as a crash would; returns
    /// its port.
    pub async fn kill_master_of(&mut self, key: &str) -> u16 {
        let port = self.master_of(key).await.expect("a master holds the key");
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        if let Some(mut child) = node.child.take() {
            child.kill().await.expect("the node is killed");
        }
        port
    }

    /// Whether every shard's group has nothing undelivered or pending
    /// within `timeout`.
    pub async fn drained(&self, shards: &Shards, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut conn = self.connect().await;
        while tokio::time::Instant::now() < deadline {
            let mut all = true;
            for keys in shards.all() {
                let groups: Result<redis::streams::StreamInfoGroupsReply, _> =
                    conn.xinfo_groups(&keys.stream).await;
                all &= groups.is_ok_and(|g| {
                    g.groups
                        .iter()
                        .any(|g| g.name == keys.group && g.pending == 0 && g.lag == Some(0))
                });
            }
            if all {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

async fn ping(port: u16) -> Result<String, redis::RedisError> {
    node_cmd(port, &redis::cmd("PING")).await
}

/// Runs `cmd` on one node (no redirection).
async fn node_cmd<T: redis::FromRedisValue>(
    port: u16,
    cmd: &redis::Cmd,
) -> Result<T, redis::RedisError> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    cmd.query_async(&mut conn).await
}
