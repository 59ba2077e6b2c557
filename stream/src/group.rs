//! Creating the stream together with its consumer group.
//!
//! The stream is created only here, with `MKSTREAM`, and appends use
//! `NOMKSTREAM` ([`crate::append()`]): a Valkey that restarted empty makes
//! appends fail loudly instead of silently growing a stream nobody reads.

use redis::{AsyncCommands, RedisError, aio::ConnectionLike};

use crate::keys::StreamKeys;

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
