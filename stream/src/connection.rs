//! How the api and the pipeline reach Valkey: one node, through redis-rs's
//! `ConnectionManager` (reconnects by itself after a restart), or a Valkey or
//! Redis Cluster, through redis-rs's own cluster client (`cluster-async`:
//! it follows MOVED/ASK, refreshes the topology after a failover and
//! reconnects). Both are one [`Valkey`] connection, so that no other code
//! knows which it talks to.
//!
//! Every wait is bounded, because a connection can go half-open: the server,
//! a NAT or a load balancer forgets it and no reset ever arrives, so the
//! socket stays `ESTAB` and a reply never comes. Every socket has TCP
//! keepalive with short intervals and `TCP_USER_TIMEOUT` (Linux), which end a
//! connection whose peer vanished; every command has a reply timeout (a
//! blocking read: its block time plus [`BLOCKING_MARGIN`]), and a connection
//! that lets one pass is replaced by a fresh one. redis-rs reconnects only
//! when the socket fails, not after a timeout, so a frozen connection would
//! otherwise time out every command for good.
//!
//! In cluster mode `VALKEY_URL` holds comma-separated seed nodes; each is
//! checked at start-up ([`Target::parse`]) and a bad one is named (without
//! its password).

use std::{io, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use domain::setting::InvalidSetting;
use redis::{
    Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClient, ClusterConfig},
    cluster_async::ClusterConnection,
    io::tcp::{TcpSettings, socket2::TcpKeepalive},
};

/// How long a blocking read may take beyond its block time before its
/// connection counts as lost: room for a full batch's reply on a busy
/// server, far below anything a half-open connection could look like.
pub const BLOCKING_MARGIN: Duration = Duration::from_secs(2);

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
    /// Longest wait for a reply (to the whole command, retries and
    /// redirections included); past it the connection is replaced.
    pub response_timeout: Duration,
    /// Reconnection attempts of a single-node connection before a command
    /// fails (the cluster client retries by its own policy).
    pub retries: usize,
}

impl ConnectOptions {
    /// Short commands (acks, claims, trims): redis-rs's own timeouts.
    pub const COMMANDS: Self = Self {
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_millis(500),
        retries: 2,
    };

    /// Blocking reads of up to `block`: their reply may take the whole
    /// block time, and [`BLOCKING_MARGIN`] more.
    pub fn blocking(block: Duration) -> Self {
        Self {
            response_timeout: block + BLOCKING_MARGIN,
            ..Self::COMMANDS
        }
    }
}

/// The TCP settings of every Valkey socket: a peer silent for 5 s is probed
/// every 2 s, and a connection whose probes or data go unanswered for 10 s
/// is closed by the kernel, so that a vanished server (or a middlebox that
/// dropped the connection) is noticed even with no command waiting.
fn tcp_settings() -> TcpSettings {
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(5))
        .with_interval(Duration::from_secs(2));
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    let keepalive = keepalive.with_retries(3);
    let settings = TcpSettings::default().set_keepalive(keepalive);
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    let settings = settings.set_user_timeout(Duration::from_secs(10));
    settings
}

/// One Valkey connection, multiplexed and reconnecting, to a node or a
/// cluster: cheap to clone, and every clone shares it (and its
/// replacement, once a reply timed out).
#[derive(Clone)]
pub struct Valkey(Arc<Link>);

/// What every clone of a [`Valkey`] shares.
struct Link {
    target: Target,
    options: ConnectOptions,
    /// The connection in use; swapped for a fresh one when a reply times
    /// out. Commands already sent finish (or time out) on the old one.
    current: ArcSwap<Connection>,
}

#[derive(Clone)]
enum Connection {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Target {
    /// Reads `VALKEY_URL`: one URL, or with `cluster` one or more
    /// comma-separated seed nodes. Every socket gets keepalive (see
    /// [`Valkey`]).
    pub fn parse(url: &str, cluster: bool) -> Result<Self, InvalidSetting> {
        if !cluster {
            let info = url
                .into_connection_info()
                .map_err(|err| invalid(url, &err))?
                .set_tcp_settings(tcp_settings());
            let client = redis::Client::open(info).map_err(|err| invalid(url, &err))?;
            return Ok(Self::Node(client));
        }
        let mut seeds = Vec::new();
        for entry in url.split(',').map(str::trim) {
            let info = entry
                .into_connection_info()
                .map_err(|err| invalid(entry, &err))?;
            seeds.push(info);
        }
        let client = ClusterClient::builder(seeds)
            .tcp_settings(tcp_settings())
            .build()
            .map_err(|err| invalid(url, &err))?;
        Ok(Self::Cluster(Box::new(client)))
    }

    /// Connects now; fails if Valkey cannot be reached.
    pub async fn connect(&self, options: ConnectOptions) -> RedisResult<Valkey> {
        let connection = match self {
            Self::Node(client) => Connection::Node(
                ConnectionManager::new_with_config(client.clone(), node_config(options)).await?,
            ),
            Self::Cluster(client) => Connection::Cluster(
                client
                    .get_async_connection_with_config(cluster_config(options))
                    .await?,
            ),
        };
        Ok(Valkey::new(self.clone(), options, connection))
    }

    /// Connects in the background: commands fail until Valkey is reachable,
    /// and then work, without a restart.
    pub fn connect_lazy(&self, options: ConnectOptions) -> RedisResult<Valkey> {
        let connection = self.connection_lazy(options)?;
        Ok(Valkey::new(self.clone(), options, connection))
    }

    fn connection_lazy(&self, options: ConnectOptions) -> RedisResult<Connection> {
        Ok(match self {
            Self::Node(client) => Connection::Node(ConnectionManager::new_lazy_with_config(
                client.clone(),
                node_config(options),
            )?),
            Self::Cluster(client) => Connection::Cluster(
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
        .set_response_timeout(Some(options.response_timeout))
}

fn cluster_config(options: ConnectOptions) -> ClusterConfig {
    ClusterConfig::new()
        .set_connection_timeout(options.connect_timeout)
        .set_response_timeout(options.response_timeout)
}

impl Valkey {
    fn new(target: Target, options: ConnectOptions, connection: Connection) -> Self {
        Self(Arc::new(Link {
            target,
            options,
            current: ArcSwap::from_pointee(connection),
        }))
    }

    /// Runs `request` on the current connection within the reply timeout;
    /// if it times out, the connection is replaced (unless another command
    /// already did), and the error is the caller's to retry.
    async fn bounded<T>(
        &self,
        request: impl AsyncFnOnce(&mut Connection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let link = &self.0;
        let used = link.current.load_full();
        let mut connection = Connection::clone(&used);
        let reply = tokio::time::timeout(link.options.response_timeout, request(&mut connection))
            .await
            .unwrap_or_else(|_| Err(timed_out(link.options.response_timeout)));
        if let Err(err) = &reply
            && err.is_timeout()
        {
            link.replace(&used);
        }
        reply
    }
}

impl Link {
    /// Swaps `used` for a fresh connection, made in the background.
    fn replace(&self, used: &Arc<Connection>) {
        match self.target.connection_lazy(self.options) {
            Ok(fresh) => {
                let previous = self.current.compare_and_swap(used, Arc::new(fresh));
                if Arc::ptr_eq(&previous, used) {
                    tracing::warn!(
                        timeout = ?self.options.response_timeout,
                        "no reply from Valkey in time; replacing the connection"
                    );
                }
            }
            Err(err) => tracing::warn!(%err, "cannot replace a Valkey connection that timed out"),
        }
    }
}

fn timed_out(after: Duration) -> RedisError {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no reply from Valkey within {after:?}"),
    )
    .into()
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
        Box::pin(self.bounded(async move |connection| match connection {
            Connection::Node(conn) => conn.req_packed_command(cmd).await,
            Connection::Cluster(conn) => conn.req_packed_command(cmd).await,
        }))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.bounded(async move |connection| match connection {
            Connection::Node(conn) => conn.req_packed_commands(cmd, offset, count).await,
            Connection::Cluster(conn) => conn.req_packed_commands(cmd, offset, count).await,
        }))
    }

    fn get_db(&self) -> i64 {
        match &**self.0.current.load() {
            Connection::Node(conn) => conn.get_db(),
            Connection::Cluster(conn) => conn.get_db(),
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
