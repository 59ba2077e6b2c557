//! The dead-letter stream `{stream}:dead`: where an entry that can never be
//! counted goes, with its reason and original bytes, so that a bad entry
//! neither stops the worker nor vanishes.
//!
//! A dead letter is written before the original is acknowledged: a crash in
//! between duplicates the dead letter rather than losing the entry.

use redis::{RedisError, aio::ConnectionLike};

use crate::consumer::Delivery;

/// Appends one dead letter for `delivery`.
pub async fn write<C>(
    conn: &mut C,
    dead_stream: &str,
    delivery: &Delivery,
    reason: &str,
    consumer: &str,
) -> Result<(), RedisError>
where
    C: ConnectionLike + Send,
{
    let mut cmd = redis::cmd("XADD");
    cmd.arg(dead_stream)
        .arg("*")
        .arg("original_id")
        .arg(&delivery.id)
        .arg("reason")
        .arg(reason)
        .arg("consumer")
        .arg(consumer);
    if let Some(payload) = &delivery.payload {
        cmd.arg("payload").arg(payload);
    }
    let _: String = cmd.query_async(conn).await?;
    Ok(())
}
