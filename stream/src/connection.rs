//! How the api and the pipeline reach Valkey: one node, through redis-rs's
//! `ConnectionManager` (reconnects by itself after a restart), or a Valkey or
//! Redis Cluster, through redis-rs's own cluster client (`cluster-async`:
//! it follows MOVED/ASK, refreshes the topology after a failover and
//! reconnects). Both are one [`Valkey`] connection, so that no other code
//! knows which it talks to.
//!
//! In cluster mode `VALKEY_URL` holds comma-separated seed nodes; each is
//! checked at start-up ([`Target::parse`]) and a bad one is named (without
//! its password).

use std::time::Duration;

use domain::setting::InvalidSetting;
use redis::{
    Cmd, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClient, ClusterConfig},
    cluster_async::ClusterConnection,
};

/// Where Valkey is: one node or a cluster's seed nodes.
#[derive(Clone)]
pub enum Target {
    Node(redis::Client),
    /// Boxed: a cluster client is several times the size of a node's.
    Cluster(Box<ClusterClient>),
}

/// How a connection waits and retries.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// Longest wait for a connection to a node.
    pub connect_timeout: Duration,
    /// Longest wait for a reply; `None` for blocking reads, which wait
    /// longer than any timeout on purpose.
    pub response_timeout: Option<Duration>,
    /// Reconnection attempts of a single-node connection before a command
    /// fails (the cluster client retries by its own policy).
    pub retries: usize,
}

impl ConnectOptions {
    /// Short commands (acks, claims, trims): redis-rs's own timeouts.
    pub const COMMANDS: Self = Self {
        connect_timeout: Duration::from_secs(1),
        response_timeout: Some(Duration::from_millis(500)),
        retries: 2,
    };
    /// Blocking reads: no reply timeout.
    pub const BLOCKING: Self = Self {
        response_timeout: None,
        ..Self::COMMANDS
    };
}

/// One Valkey connection, multiplexed and reconnecting, to a node or a
/// cluster: cheap to clone, and every clone shares it.
#[derive(Clone)]
pub enum Valkey {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Target {
    /// Reads `VALKEY_URL`: one URL, or with `cluster` one or more
    /// comma-separated seed nodes.
    pub fn parse(url: &str, cluster: bool) -> Result<Self, InvalidSetting> {
        if !cluster {
            let client = redis::Client::open(url).map_err(|err| invalid(url, &err))?;
            return Ok(Self::Node(client));
        }
        let mut seeds = Vec::new();
        for entry in url.split(',').map(str::trim) {
            let info = entry
                .into_connection_info()
                .map_err(|err| invalid(entry, &err))?;
            seeds.push(info);
        }
        let client = ClusterClient::new(seeds).map_err(|err| invalid(url, &err))?;
        Ok(Self::Cluster(Box::new(client)))
    }

    /// Connects now; fails if Valkey cannot be reached.
    pub async fn connect(&self, options: ConnectOptions) -> RedisResult<Valkey> {
        Ok(match self {
            Self::Node(client) => Valkey::Node(
                ConnectionManager::new_with_config(client.clone(), node_config(options)).await?,
            ),
            Self::Cluster(client) => Valkey::Cluster(
                client
                    .get_async_connection_with_config(cluster_config(options))
                    .await?,
            ),
        })
    }

    /// Connects in the background: commands fail until Valkey is reachable,
    /// and then work, without a restart.
    pub fn connect_lazy(&self, options: ConnectOptions) -> RedisResult<Valkey> {
        Ok(match self {
            Self::Node(client) => Valkey::Node(ConnectionManager::new_lazy_with_config(
                client.clone(),
                node_config(options),
            )?),
            Self::Cluster(client) => Valkey::Cluster(
                client.get_pending_async_connection_with_config(cluster_config(options)),
            ),
        })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl From<&redis::Client> for Target {
    fn from(client: &redis::Client) -> Self {
        Self::Node(client.clone())
    }
}

fn node_config(options: ConnectOptions) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(options.retries)
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(options.response_timeout)
}

fn cluster_config(options: ConnectOptions) -> ClusterConfig {
    let config = ClusterConfig::new().set_connection_timeout(options.connect_timeout);
    match options.response_timeout {
        Some(timeout) => config.set_response_timeout(timeout),
        None => config,
    }
}

/// `VALKEY_URL` is wrong at `entry`, shown without a password.
fn invalid(entry: &str, err: &redis::RedisError) -> InvalidSetting {
    InvalidSetting {
        var: "VALKEY_URL",
        value: redact(entry),
        rule: format!("is not a Valkey URL such as redis://10.0.0.1:6379 ({err})"),
    }
}

/// `entry` with anything before an `@` (user and password) masked.
fn redact(entry: &str) -> String {
    match entry.rsplit_once('@') {
        Some((credentials, host)) => {
            let scheme = credentials
                .split_once("://")
                .map_or("", |(scheme, _)| scheme);
            format!("{scheme}://***@{host}")
        }
        None => entry.to_owned(),
    }
}

impl ConnectionLike for Valkey {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_lists_are_read_and_a_bad_entry_is_named() {
        let ok = Target::parse("redis://10.0.0.1:6379, redis://10.0.0.2:6379", true).unwrap();
        assert!(ok.is_cluster());
        let err = Target::parse("redis://10.0.0.1:6379,http://nope:1", true)
            .err()
            .unwrap();
        assert_eq!(err.var, "VALKEY_URL");
        assert_eq!(err.value, "http://nope:1");
        let err = Target::parse("redis://10.0.0.1:6379,", true).err().unwrap();
        assert_eq!(err.value, "");
    }

    #[test]
    fn a_password_is_never_shown() {
        let err = Target::parse("redis://10.0.0.1:6379,ftp://user:s3cret@host:1", true)
            .err()
            .unwrap();
        assert_eq!(err.value, "ftp://***@host:1");
        assert!(!err.to_string().contains("s3cret"));
    }

    #[test]
    fn a_single_node_takes_one_url() {
        assert!(
            !Target::parse("redis://127.0.0.1:6379", false)
                .unwrap()
                .is_cluster()
        );
        assert!(Target::parse("redis://a:1,redis://b:2", false).is_err());
    }
}
