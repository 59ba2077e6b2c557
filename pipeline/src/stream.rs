//! The stream contract: key names, the entry field, group creation and the
//! append used by the api.
//!
//! Appends use `NOMKSTREAM`: the stream is created only together with its
//! consumer group ([`ensure_group`]), so a Valkey that restarted empty makes
//! appends fail loudly instead of silently growing a stream nobody reads.

use redis::{AsyncCommands, RedisError, aio::ConnectionLike};

/// The entry field that holds the MessagePack record.
pub const FIELD: &str = "e";

/// Names of the stream, its dead-letter stream and the consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamKeys {
    pub stream: String,
    pub dead: String,
    pub group: String,
}

impl StreamKeys {
    pub fn new(stream: &str, group: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            dead: format!("{stream}:dead"),
            group: group.to_owned(),
        }
    }
}

/// Creates the stream and its consumer group, reading from the very first
/// entry, unless the group exists. Only `BUSYGROUP` means "exists", or,
/// from a Valkey at `maxmemory`, an `OOM` refusal (given before it looks
/// for the group) when the group is there: a worker must be able to start
/// then, since reading, acking and trimming are what free the memory.
pub async fn ensure_group<C>(conn: &mut C, keys: &StreamKeys) -> Result<(), RedisError>
where
    C: ConnectionLike + Send + Sync,
{
    let created: Result<(), RedisError> = conn
        .xgroup_create_mkstream(&keys.stream, &keys.group, "0")
        .await;
    match created {
        Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
        Err(err) if err.code() == Some("OOM") => {
            let groups: Result<redis::streams::StreamInfoGroupsReply, _> =
                conn.xinfo_groups(&keys.stream).await;
            match groups {
                Ok(groups) if groups.groups.iter().any(|g| g.name == keys.group) => Ok(()),
                _ => Err(err),
            }
        }
        other => other,
    }
}

/// Why an append did not store the events.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The stream does not exist: Valkey lost its data, or nothing created it.
    #[error("stream is missing (Valkey restarted without its data?)")]
    StreamMissing,
    #[error(transparent)]
    Redis(#[from] RedisError),
}

/// Appends encoded records in one round trip and returns their entry ids.
///
/// Several records go in one `MULTI`/`EXEC`, so either all are stored or none
/// is: a client retrying a failed batch cannot double-count part of it.
pub async fn append<C>(
    conn: &mut C,
    stream: &str,
    payloads: &[Vec<u8>],
) -> Result<Vec<String>, AppendError>
where
    C: ConnectionLike + Send,
{
    let mut pipe = redis::pipe();
    if payloads.len() > 1 {
        pipe.atomic();
    }
    for payload in payloads {
        pipe.cmd("XADD")
            .arg(stream)
            .arg("NOMKSTREAM")
            .arg("*")
            .arg(FIELD)
            .arg(payload);
    }
    let ids: Vec<Option<String>> = pipe.query_async(conn).await?;
    ids.into_iter()
        .map(|id| id.ok_or(AppendError::StreamMissing))
        .collect()
}
