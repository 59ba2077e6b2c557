//! The dead-letter stream `{stream}:dead`: where an entry that can never be
//! counted goes, with its reason, delivery count and original bytes, so that
//! a bad entry neither stops the worker nor vanishes.
//!
//! A dead letter is written before the original is acknowledged: a crash in
//! between duplicates the dead letter rather than losing the entry. An
//! operator can list dead letters and re-drive them into the stream once the
//! cause is fixed; re-driving adds the entry back before deleting the letter,
//! so a crash there too can only duplicate, and the ledger counts a
//! duplicate once.

use redis::{AsyncCommands, RedisError, Value, aio::ConnectionLike, streams::StreamRangeReply};

use stream::{AppendError, StreamKeys, append};

/// One entry on its way to the dead-letter stream.
pub struct DeadLetter<'a> {
    pub original_id: &'a str,
    pub reason: &'a str,
    pub consumer: &'a str,
    pub deliveries: usize,
    /// The original bytes of field `e`, when the entry had one.
    pub payload: Option<&'a [u8]>,
}

impl DeadLetter<'_> {
    pub async fn write<C>(&self, conn: &mut C, dead_stream: &str) -> Result<(), RedisError>
    where
        C: ConnectionLike + Send,
    {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(dead_stream)
            .arg("*")
            .arg("original_id")
            .arg(self.original_id)
            .arg("reason")
            .arg(self.reason)
            .arg("consumer")
            .arg(self.consumer)
            .arg("deliveries")
            .arg(self.deliveries);
        if let Some(payload) = self.payload {
            cmd.arg("payload").arg(payload);
        }
        let _: String = cmd.query_async(conn).await?;
        Ok(())
    }
}

/// A dead letter as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLetter {
    /// Its id in the dead-letter stream.
    pub id: String,
    pub original_id: String,
    pub reason: String,
    pub deliveries: usize,
    pub payload: Option<Vec<u8>>,
}

fn text(entry: &redis::streams::StreamId, field: &str) -> String {
    entry.get::<String>(field).unwrap_or_default()
}

/// The oldest `limit` dead letters.
pub async fn list<C>(
    conn: &mut C,
    keys: &StreamKeys,
    limit: usize,
) -> Result<Vec<StoredLetter>, RedisError>
where
    C: ConnectionLike + Send + Sync,
{
    let reply: StreamRangeReply = conn.xrange_count(&keys.dead, "-", "+", limit).await?;
    Ok(reply
        .ids
        .into_iter()
        .map(|entry| StoredLetter {
            original_id: text(&entry, "original_id"),
            reason: text(&entry, "reason"),
            deliveries: entry.get("deliveries").unwrap_or(1),
            payload: match entry.map.get("payload") {
                Some(Value::BulkString(bytes)) => Some(bytes.clone()),
                _ => None,
            },
            id: entry.id,
        })
        .collect())
}

/// Puts dead letters back into the stream (those with a payload) and removes
/// them from the dead-letter stream. Returns how many were re-driven.
pub async fn redrive<C>(
    conn: &mut C,
    keys: &StreamKeys,
    letters: &[StoredLetter],
) -> Result<usize, AppendError>
where
    C: ConnectionLike + Send + Sync,
{
    let mut redriven = 0;
    for letter in letters {
        if let Some(payload) = &letter.payload {
            append(conn, &keys.stream, std::slice::from_ref(payload)).await?;
            redriven += 1;
        }
        let _: u64 = conn.xdel(&keys.dead, &[&letter.id]).await?;
    }
    Ok(redriven)
}
