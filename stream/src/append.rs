//! Appending records: one round trip, atomic for several, never creating the
//! stream (`NOMKSTREAM`, see [`crate::group`]), and optionally confirmed by
//! replicas (`WAIT`) before it counts as stored.

use std::{num::NonZeroU32, time::Duration};

use redis::{RedisError, aio::ConnectionLike};

use crate::keys::FIELD;

/// Why an append did not store the events.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The stream does not exist: Valkey lost its data, or nothing created it.
    #[error("stream is missing (Valkey restarted without its data?)")]
    StreamMissing,
    /// The primary stored the events but fewer replicas than required
    /// confirmed them in time: a failover now could lose them.
    #[error("{confirmed} of {wanted} replicas confirmed the append in time")]
    NotReplicated { confirmed: u32, wanted: u32 },
    #[error(transparent)]
    Redis(#[from] RedisError),
}

/// How many replicas must hold an append, and how long to wait for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    pub replicas: NonZeroU32,
    pub timeout: Duration,
}

impl Replication {
    /// `None` (no waiting) for 0 replicas.
    pub fn new(replicas: u32, timeout: Duration) -> Option<Self> {
        NonZeroU32::new(replicas).map(|replicas| Self { replicas, timeout })
    }
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
    append_replicated(conn, stream, payloads, None).await
}

/// [`append`], then, with `replication`, `WAIT` in the same round trip (and
/// so on the same node of a cluster): the append counts as stored only once
/// that many replicas confirm it within the timeout.
pub async fn append_replicated<C>(
    conn: &mut C,
    stream: &str,
    payloads: &[Vec<u8>],
    replication: Option<Replication>,
) -> Result<Vec<String>, AppendError>
where
    C: ConnectionLike + Send,
{
    let mut pipe = redis::pipe();
    let ids: Vec<Option<String>> = match replication {
        None => {
            if payloads.len() > 1 {
                pipe.atomic();
            }
            add_appends(&mut pipe, stream, payloads, false);
            pipe.query_async(conn).await?
        }
        Some(replication) => {
            // WAIT cannot go inside the transaction (there it does not
            // wait), so MULTI and EXEC are sent by hand around the appends.
            pipe.cmd("MULTI").ignore();
            add_appends(&mut pipe, stream, payloads, true);
            pipe.cmd("EXEC")
                .cmd("WAIT")
                .arg(replication.replicas.get())
                .arg(replication.timeout.as_millis() as u64);
            let (ids, confirmed): (Vec<Option<String>>, u32) = pipe.query_async(conn).await?;
            if confirmed < replication.replicas.get() {
                return Err(AppendError::NotReplicated {
                    confirmed,
                    wanted: replication.replicas.get(),
                });
            }
            ids
        }
    };
    ids.into_iter()
        .map(|id| id.ok_or(AppendError::StreamMissing))
        .collect()
}

/// One `XADD` per payload; their replies are ignored when queued in a
/// transaction sent by hand (`QUEUED`; `EXEC` answers the ids).
fn add_appends(pipe: &mut redis::Pipeline, stream: &str, payloads: &[Vec<u8>], queued: bool) {
    for payload in payloads {
        pipe.cmd("XADD")
            .arg(stream)
            .arg("NOMKSTREAM")
            .arg("*")
            .arg(FIELD)
            .arg(payload);
        if queued {
            pipe.ignore();
        }
    }
}
