//! Removing the consumers that replicas left behind: every replica joins
//! its group under a name of its own (`hostname-pid`), so every crash or
//! restart leaves one more name in the group, forever, unless someone
//! removes it. The janitor removes those that own no pending entries and
//! have not read for a long time (`FLAGMETER_STALE_CONSUMER_SECS`).
//!
//! `XGROUP DELCONSUMER` drops the consumer's pending entries with it, and
//! they would then never be counted, nor taken over. So the check and the
//! removal run as one script, atomically: no entry can be delivered to the
//! consumer in between. A consumer removed while alive (one idle that long
//! owns nothing) is harmless: its next read recreates it.

use std::time::Duration;

use redis::{RedisError, aio::ConnectionLike};
use stream::StreamKeys;

/// Removes, from group `ARGV[1]` of stream `KEYS[1]`, every consumer with
/// no pending entry and idle (no read, claim or ack attempted) for at least
/// `ARGV[2]` ms; returns their names.
const REMOVE_STALE: &str = r"
local removed = {}
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local field = {}
  for i = 1, #consumer, 2 do field[consumer[i]] = consumer[i + 1] end
  if field['pending'] == 0 and field['idle'] >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], field['name'])
    table.insert(removed, field['name'])
  end
end
return removed
";

/// Removes the shard's consumers that own nothing and have been idle for
/// `idle`; returns their names.
pub async fn remove<C>(
    conn: &mut C,
    keys: &StreamKeys,
    idle: Duration,
) -> Result<Vec<String>, RedisError>
where
    C: ConnectionLike + Send + Sync,
{
    redis::cmd("EVAL")
        .arg(REMOVE_STALE)
        .arg(1)
        .arg(&keys.stream)
        .arg(&keys.group)
        .arg(idle.as_millis() as u64)
        .query_async(conn)
        .await
}
