//! Appending records: one round trip, atomic for several, never creating the
//! stream (`NOMKSTREAM`, see [`crate::group`]).

use redis::{RedisError, aio::ConnectionLike};

use crate::keys::FIELD;

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
