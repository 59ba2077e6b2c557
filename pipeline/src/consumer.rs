//! Reading from the consumer group: new entries with `XREADGROUP`, entries a
//! dead or stuck replica left pending with `XAUTOCLAIM`, and the `XACK` that
//! ends an entry's life once its effect is committed.
//!
//! A consumer reads one shard of the stream. Blocking reads go over a
//! connection of their own whose reply timeout is the block time plus a
//! margin (the commands' 500 ms would time a `BLOCK` out, and a blocking read
//! would hold up every command queued behind it); acks and claims share
//! another. Both reconnect by themselves after Valkey restarts or a cluster
//! fails over, and are replaced when a reply does not come in time (a
//! half-open connection, [`stream::Valkey`]).

use std::{collections::HashMap, time::Duration};

use redis::{
    AsyncCommands, RedisError, Value,
    streams::{
        StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamPendingCountReply,
        StreamReadOptions, StreamReadReply,
    },
};

use stream::{ConnectOptions, EntryId, FIELD, StreamKeys, Target, Valkey, ensure_group};

/// One entry handed to this consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The stream entry id.
    pub id: String,
    /// The raw bytes of field `e`, or `None` when the entry has no such field.
    pub payload: Option<Vec<u8>>,
}

impl From<StreamId> for Delivery {
    fn from(mut entry: StreamId) -> Self {
        let payload = match entry.map.remove(FIELD) {
            Some(Value::BulkString(bytes)) => Some(bytes),
            Some(Value::SimpleString(text)) => Some(text.into_bytes()),
            _ => None,
        };
        Self {
            id: entry.id,
            payload,
        }
    }
}

/// How a consumer reads.
#[derive(Debug, Clone)]
pub struct ReadSettings {
    /// Most entries one read returns.
    pub batch_size: usize,
    /// How long a read waits for new entries.
    pub block: Duration,
    /// How long an entry must have been pending before another replica may
    /// take it over. Must exceed the longest two batches (read + commit +
    /// ack): a batch is read while the one before it commits.
    pub claim_idle: Duration,
}

/// A named member of one shard's consumer group.
pub struct Consumer {
    keys: StreamKeys,
    name: String,
    settings: ReadSettings,
    /// Dedicated to blocking reads, with a reply timeout above the block time.
    reader: Valkey,
    /// Shared by acks and claims; reconnects by itself.
    commands: Valkey,
}

impl Consumer {
    /// Connects, and creates the shard and its group if they do not exist.
    pub async fn connect(
        target: impl Into<Target>,
        keys: StreamKeys,
        name: String,
        settings: ReadSettings,
    ) -> Result<Self, RedisError> {
        let target = target.into();
        let reader = target
            .connect(ConnectOptions::blocking(settings.block))
            .await?;
        let commands = target.connect(ConnectOptions::COMMANDS).await?;
        let mut consumer = Self {
            keys,
            name,
            settings,
            reader,
            commands,
        };
        ensure_group(&mut consumer.commands, &consumer.keys).await?;
        Ok(consumer)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn keys(&self) -> &StreamKeys {
        &self.keys
    }

    /// A connection for short commands (acks, dead letters).
    pub fn commands(&self) -> Valkey {
        self.commands.clone()
    }

    /// Waits up to the block time for new entries.
    ///
    /// If the group has vanished (Valkey restarted without its data), it is
    /// recreated and the loss is logged for an operator.
    pub async fn read(&self) -> Result<Vec<Delivery>, RedisError> {
        let options = StreamReadOptions::default()
            .group(&self.keys.group, &self.name)
            .count(self.settings.batch_size)
            .block(self.settings.block.as_millis() as usize);
        let mut reader = self.reader.clone();
        let reply: Result<Option<StreamReadReply>, RedisError> = reader
            .xread_options(&[&self.keys.stream], &[">"], &options)
            .await;
        match reply {
            Ok(reply) => Ok(reply
                .into_iter()
                .flat_map(|reply| reply.keys)
                .flat_map(|key| key.ids)
                .map(Delivery::from)
                .collect()),
            Err(err) if err.code() == Some("NOGROUP") => {
                tracing::error!(
                    stream = %self.keys.stream,
                    "consumer group is missing: Valkey lost its data; recreating it"
                );
                ensure_group(&mut self.commands.clone(), &self.keys).await?;
                Ok(Vec::new())
            }
            Err(err) => Err(err),
        }
    }

    /// Takes over up to one batch of entries that have been pending longer
    /// than the claim idle time, scanning from `cursor`. Returns the entries
    /// and the cursor to continue from (`0-0` once the scan is complete).
    pub async fn reclaim(&self, cursor: &str) -> Result<(Vec<Delivery>, String), RedisError> {
        let options = StreamAutoClaimOptions::default().count(self.settings.batch_size);
        let reply: StreamAutoClaimReply = self
            .commands
            .clone()
            .xautoclaim_options(
                &self.keys.stream,
                &self.keys.group,
                &self.name,
                self.settings.claim_idle.as_millis() as u64,
                cursor,
                options,
            )
            .await?;
        let deliveries = reply.claimed.into_iter().map(Delivery::from).collect();
        Ok((deliveries, reply.next_stream_id))
    }

    /// How many times each of `ids` (pending on this consumer) has been
    /// delivered. `XAUTOCLAIM` does not say; `XPENDING` does. Ids it does not
    /// list are left out of the map.
    pub async fn delivery_counts(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, usize>, RedisError> {
        let parsed = ids.iter().filter_map(|id| id.parse::<EntryId>().ok());
        let (Some(first), Some(last)) = (parsed.clone().min(), parsed.max()) else {
            return Ok(HashMap::new());
        };
        let reply: StreamPendingCountReply = self
            .commands
            .clone()
            .xpending_consumer_count(
                &self.keys.stream,
                &self.keys.group,
                first.to_string(),
                last.to_string(),
                ids.len() + 1000,
                &self.name,
            )
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|p| (p.id, p.times_delivered))
            .collect())
    }

    /// Resets the idle time of entries this consumer is still working on,
    /// so that a slow but live replica does not have them taken over and
    /// redone. Only entries idle for half the claim time are touched, so an
    /// entry another replica already took over stays with it.
    pub async fn touch(&self, ids: &[String]) -> Result<(), RedisError> {
        if ids.is_empty() {
            return Ok(());
        }
        let min_idle = (self.settings.claim_idle / 2).as_millis() as u64;
        let _: Vec<String> = redis::cmd("XCLAIM")
            .arg(&self.keys.stream)
            .arg(&self.keys.group)
            .arg(&self.name)
            .arg(min_idle)
            .arg(ids)
            .arg("JUSTID")
            .query_async(&mut self.commands.clone())
            .await?;
        Ok(())
    }

    /// Acknowledges entries whose effect is committed.
    pub async fn ack(&self, ids: &[String]) -> Result<(), RedisError> {
        if ids.is_empty() {
            return Ok(());
        }
        let _: u64 = self
            .commands
            .clone()
            .xack(&self.keys.stream, &self.keys.group, ids)
            .await?;
        Ok(())
    }
}
