//! Where Valkey is and which stream and group to use: configuration shared by
//! the api and the pipeline. Each field is an environment variable and a
//! `--flag`; the URL may carry a password, so it is never printed.

use domain::setting::{InvalidSetting, require};

use crate::{connection::Target, keys::Shards};

/// Valkey and the stream contract.
#[derive(Debug, Clone, clap::Args)]
pub struct ValkeyArgs {
    /// Valkey (or Redis 7) URL; with FLAGMETER_VALKEY_CLUSTER, one or more
    /// comma-separated seed nodes of the cluster.
    #[arg(long, env = "VALKEY_URL", default_value = "redis://127.0.0.1:6379")]
    pub valkey_url: String,
    /// Connect to a Valkey or Redis Cluster instead of one node.
    #[arg(long, env = "FLAGMETER_VALKEY_CLUSTER", default_value_t = false)]
    pub valkey_cluster: bool,
    /// Stream key. (Dead letters are kept in PostgreSQL; `{stream}:dead`
    /// is where an earlier version kept them.)
    #[arg(long, env = "FLAGMETER_STREAM", default_value = "flagmeter:events")]
    pub stream: String,
    /// Number of stream shards: 1 is the stream key itself; N > 1 are N keys
    /// `{stream}:{tag}`, each in its own cluster slot, with its own group.
    #[arg(long, env = "FLAGMETER_STREAM_SHARDS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub stream_shards: u16,
    /// Consumer group the pipeline workers share (one per shard).
    #[arg(long, env = "FLAGMETER_GROUP", default_value = "rollups")]
    pub group: String,
}

impl ValkeyArgs {
    /// One node at `valkey_url`, one shard: the settings of a single Valkey.
    pub fn single(valkey_url: &str, stream: &str, group: &str) -> Self {
        Self {
            valkey_url: valkey_url.to_owned(),
            valkey_cluster: false,
            stream: stream.to_owned(),
            stream_shards: 1,
            group: group.to_owned(),
        }
    }

    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.target()?;
        require(
            !self.stream.is_empty(),
            "FLAGMETER_STREAM",
            "",
            "must not be empty",
        )?;
        require(
            self.stream_shards == 1 || !self.stream.contains(['{', '}']),
            "FLAGMETER_STREAM",
            &self.stream,
            "must not contain { or } with FLAGMETER_STREAM_SHARDS above 1 \
             (each shard has a hash tag of its own)",
        )?;
        require(
            !self.group.is_empty(),
            "FLAGMETER_GROUP",
            "",
            "must not be empty",
        )
    }

    /// Where Valkey is; an error names a malformed URL or seed node.
    pub fn target(&self) -> Result<Target, InvalidSetting> {
        Target::parse(&self.valkey_url, self.valkey_cluster)
    }

    /// The shards these settings give.
    pub fn shards(&self) -> Shards {
        Shards::new(&self.stream, &self.group, self.stream_shards)
    }
}
