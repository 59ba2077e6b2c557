//! Where Valkey is and which stream and group to use: configuration shared by
//! the api and the pipeline. Each field is an environment variable and a
//! `--flag`; the URL may carry a password, so it is never printed.

use entity::setting::{InvalidSetting, require};

use crate::keys::StreamKeys;

/// Valkey and the stream contract.
#[derive(Debug, Clone, clap::Args)]
pub struct ValkeyArgs {
    /// Valkey (or Redis 7) URL.
    #[arg(long, env = "VALKEY_URL", default_value = "redis://127.0.0.1:6379")]
    pub valkey_url: String,
    /// Stream key. (Dead letters are kept in PostgreSQL; `{stream}:dead`
    /// is where an earlier version kept them.)
    #[arg(long, env = "FLAGMETER_STREAM", default_value = "flagmeter:events")]
    pub stream: String,
    /// Consumer group the pipeline workers share.
    #[arg(long, env = "FLAGMETER_GROUP", default_value = "rollups")]
    pub group: String,
}

impl ValkeyArgs {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        require(
            !self.stream.is_empty(),
            "FLAGMETER_STREAM",
            "",
            "must not be empty",
        )?;
        require(
            !self.group.is_empty(),
            "FLAGMETER_GROUP",
            "",
            "must not be empty",
        )
    }

    /// The key names these settings give.
    pub fn keys(&self) -> StreamKeys {
        StreamKeys::new(&self.stream, &self.group)
    }
}
