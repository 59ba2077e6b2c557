//! Dead letters: where an entry that can never be counted goes, with its
//! reason, delivery count and original bytes, so that a bad entry neither
//! stops the worker nor vanishes.
//!
//! They are kept in PostgreSQL (table `dead_letters`), not in Valkey: a
//! Valkey at `maxmemory` refuses every write that adds data, and a dead
//! letter it refused would hold its batch unacknowledged, the stream
//! untrimmed and the memory full, for good. Each letter is written in its
//! own statement before the original is acknowledged: a crash in between
//! writes it again, which changes nothing (one letter per stream entry).
//!
//! An operator lists dead letters and re-drives them into the stream once
//! the cause is fixed (the pipeline's CLI, or the api's
//! `/api/dead-letters`, both over this module: it lives in the stream
//! crate so that the api uses it without depending on the pipeline); re-driving appends the entry before deleting the
//! letter, so a crash there too can only duplicate, and the ledger counts a
//! duplicate once. Dead letters that an earlier version left in the Valkey
//! stream `{stream}:dead` are moved into the table ([`import_legacy`]) when
//! a replica starts and before the CLI lists or re-drives.

use chrono::{DateTime, TimeZone, Utc};
use redis::{AsyncCommands, RedisError, Value, aio::ConnectionLike, streams::StreamRangeReply};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement};

use stream::{AppendError, EntryId, StreamKeys, append};

/// One entry on its way to the dead letters.
pub struct DeadLetter<'a> {
    /// The stream the entry is in.
    pub stream: &'a str,
    pub original_id: &'a str,
    /// `undecodable`, `refused` or `redelivered`.
    pub kind: &'a str,
    pub reason: &'a str,
    pub consumer: &'a str,
    pub deliveries: usize,
    /// The original bytes of field `e`, when the entry had one.
    pub payload: Option<&'a [u8]>,
}

const INSERT: &str = "INSERT INTO dead_letters
        (stream, entry_id, kind, reason, deliveries, consumer, payload, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, now()))
    ON CONFLICT (stream, entry_id) DO NOTHING";

impl DeadLetter<'_> {
    /// Stores the letter, unless the entry has one already.
    pub async fn write<C: ConnectionTrait>(&self, db: &C) -> Result<(), DbErr> {
        self.insert(db, None).await
    }

    async fn insert<C: ConnectionTrait>(
        &self,
        db: &C,
        created_at: Option<DateTime<Utc>>,
    ) -> Result<(), DbErr> {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            INSERT,
            [
                self.stream.into(),
                self.original_id.into(),
                self.kind.into(),
                self.reason.into(),
                (self.deliveries.clamp(1, i32::MAX as usize) as i32).into(),
                self.consumer.into(),
                self.payload.map(<[u8]>::to_vec).into(),
                created_at.into(),
            ],
        );
        db.execute_raw(statement).await?;
        Ok(())
    }
}

/// A dead letter as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLetter {
    /// Its id in the table: also the cursor of [`list`].
    pub id: i64,
    pub stream: String,
    /// The stream entry it came from.
    pub original_id: String,
    pub kind: String,
    pub reason: String,
    pub deliveries: usize,
    pub consumer: String,
    pub payload: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
}

impl StoredLetter {
    fn from_row(row: &QueryResult) -> Result<Self, DbErr> {
        Ok(Self {
            id: row.try_get("", "id")?,
            stream: row.try_get("", "stream")?,
            original_id: row.try_get("", "entry_id")?,
            kind: row.try_get("", "kind")?,
            reason: row.try_get("", "reason")?,
            deliveries: row.try_get::<i32>("", "deliveries")?.max(1) as usize,
            consumer: row.try_get("", "consumer")?,
            payload: row.try_get("", "payload")?,
            created_at: row.try_get("", "created_at")?,
        })
    }
}

/// Up to `limit` dead letters of `stream`, oldest first, after the letter
/// with id `after` (a page's last id is the next page's cursor).
pub async fn list<C: ConnectionTrait>(
    db: &C,
    stream: &str,
    limit: u64,
    after: Option<i64>,
) -> Result<Vec<StoredLetter>, DbErr> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT id, stream, entry_id, kind, reason, deliveries, consumer, payload, created_at
         FROM dead_letters WHERE stream = $1 AND id > $2 ORDER BY id LIMIT $3",
        [
            stream.into(),
            after.unwrap_or(0).into(),
            (limit.min(i64::MAX as u64) as i64).into(),
        ],
    );
    db.query_all_raw(statement)
        .await?
        .iter()
        .map(StoredLetter::from_row)
        .collect()
}

/// Why dead letters could not be moved.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Valkey(#[from] RedisError),
    #[error(transparent)]
    Database(#[from] DbErr),
}

/// Puts dead letters back into the stream (those with a payload) and
/// deletes them. Returns how many were re-driven.
pub async fn redrive<V, C>(
    valkey: &mut V,
    db: &C,
    keys: &StreamKeys,
    letters: &[StoredLetter],
) -> Result<usize, MoveError>
where
    V: redis::aio::ConnectionLike + Send,
    C: ConnectionTrait,
{
    let mut redriven = 0;
    for letter in letters {
        if let Some(payload) = &letter.payload {
            append(valkey, &keys.stream, std::slice::from_ref(payload)).await?;
            redriven += 1;
        }
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM dead_letters WHERE id = $1",
            [letter.id.into()],
        ))
        .await?;
    }
    Ok(redriven)
}

/// What [`redrive_selected`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redriven {
    /// Letters put back into the stream.
    pub redriven: usize,
    /// Letters selected (those without a payload were deleted, not put back).
    pub selected: usize,
}

/// Re-drives the letters with these ids (as listed), or the oldest `limit`
/// if `ids` is empty: what the CLI's `redrive` and the api's
/// `POST /api/dead-letters/redrive` do.
pub async fn redrive_selected<V, C>(
    valkey: &mut V,
    db: &C,
    keys: &StreamKeys,
    ids: &[i64],
    limit: u64,
) -> Result<Redriven, MoveError>
where
    V: redis::aio::ConnectionLike + Send,
    C: ConnectionTrait,
{
    let mut letters = list(db, &keys.stream, limit, None).await?;
    if !ids.is_empty() {
        letters.retain(|l| ids.contains(&l.id));
    }
    let redriven = redrive(valkey, db, keys, &letters).await?;
    Ok(Redriven {
        redriven,
        selected: letters.len(),
    })
}

/// Entries moved from the Valkey stream per round of [`import_legacy`].
const IMPORT_BATCH: usize = 500;

/// Moves the dead letters an earlier version kept in the Valkey stream
/// `{stream}:dead` into the table (each inserted, then deleted from the
/// stream: a crash in between imports it again, which changes nothing).
/// Returns how many were moved.
pub async fn import_legacy<V, C>(
    valkey: &mut V,
    db: &C,
    keys: &StreamKeys,
) -> Result<u64, MoveError>
where
    V: ConnectionLike + Send + Sync,
    C: ConnectionTrait,
{
    let mut moved = 0;
    loop {
        let reply: StreamRangeReply = valkey
            .xrange_count(&keys.dead, "-", "+", IMPORT_BATCH)
            .await?;
        if reply.ids.is_empty() {
            return Ok(moved);
        }
        for entry in &reply.ids {
            let text = |field: &str| entry.get::<String>(field).unwrap_or_default();
            let payload = match entry.map.get("payload") {
                Some(Value::BulkString(bytes)) => Some(bytes.as_slice()),
                _ => None,
            };
            let (original_id, reason, consumer) =
                (text("original_id"), text("reason"), text("consumer"));
            let created_at = entry
                .id
                .parse::<EntryId>()
                .ok()
                .and_then(|id| Utc.timestamp_millis_opt(id.ms as i64).single());
            DeadLetter {
                stream: &keys.stream,
                original_id: &original_id,
                kind: "imported",
                reason: &reason,
                consumer: &consumer,
                deliveries: entry.get("deliveries").unwrap_or(1),
                payload,
            }
            .insert(db, created_at)
            .await?;
        }
        let ids: Vec<&str> = reply.ids.iter().map(|e| e.id.as_str()).collect();
        let _: u64 = valkey.xdel(&keys.dead, &ids).await?;
        moved += ids.len() as u64;
    }
}
