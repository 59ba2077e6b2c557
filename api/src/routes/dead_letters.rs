//! `GET /api/dead-letters` and `POST /api/dead-letters/redrive` (admin):
//! the stream entries that could not be counted, and putting them back once
//! their cause is fixed. The same logic as the pipeline's
//! `dead-letters list|redrive` CLI ([`store::dead_letter`]), including
//! moving in letters an earlier version left in `{stream}:dead` first.

use chrono::{DateTime, Utc};
use poem_openapi::{Object, OpenApi, param::Query, payload::Json, types::Example};
use store::dead_letter::{self, MoveError, StoredLetter};

use super::{ApiTags, Found, paging::Limit};
use crate::{
    auth::{ApiKey, Scope},
    error::{ApiError, BodyError},
    state::AppState,
};

/// One dead letter.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct DeadLetterOut {
    /// Its id here: `after` of the next page, or one to re-drive.
    pub id: i64,
    /// The stream entry it came from.
    pub stream_id: String,
    /// `undecodable`, `refused` (by PostgreSQL), `redelivered` (too often)
    /// or `imported` (from an earlier version's dead-letter stream).
    pub kind: String,
    pub reason: String,
    /// Deliveries of the entry before it was set aside.
    pub attempts: i64,
    /// The replica that set it aside.
    pub consumer: String,
    /// Whether the original bytes are kept (only those can be re-driven).
    pub has_payload: bool,
    /// When it was set aside.
    pub created_at: DateTime<Utc>,
}

impl From<StoredLetter> for DeadLetterOut {
    fn from(l: StoredLetter) -> Self {
        Self {
            id: l.id,
            stream_id: l.original_id,
            kind: l.kind,
            reason: l.reason,
            attempts: l.deliveries as i64,
            consumer: l.consumer,
            has_payload: l.payload.is_some(),
            created_at: l.created_at,
        }
    }
}

/// Which dead letters to re-drive.
#[derive(Debug, Object)]
#[oai(example)]
pub struct RedriveIn {
    /// Ids as listed; all of them (up to `limit`, oldest first) if absent
    /// or empty.
    #[oai(nullable, validator(max_items = 10000))]
    pub ids: Option<Vec<i64>>,
    /// Most letters to re-drive when no ids are given (1–10,000, default
    /// 10,000).
    #[oai(nullable, validator(minimum(value = "1"), maximum(value = "10000")))]
    pub limit: Option<u64>,
}

impl Example for RedriveIn {
    fn example() -> Self {
        Self {
            ids: Some(vec![17, 18]),
            limit: None,
        }
    }
}

/// What a re-drive did.
#[derive(Debug, Object)]
pub struct RedriveOut {
    /// Letters put back into the stream.
    pub redriven: u64,
    /// Letters without their original bytes, deleted instead.
    pub dropped: u64,
}

/// The routes below, over the shared state.
pub struct DeadLettersApi(pub AppState);

impl DeadLettersApi {
    /// Moves in what an earlier version left in Valkey, as the CLI does,
    /// for every shard.
    async fn import_legacy(&self) -> Result<(), ApiError> {
        let mut valkey = self.0.valkey.clone();
        for keys in self.0.shards.all() {
            dead_letter::import_legacy(&mut valkey, &self.0.db, keys)
                .await
                .map_err(moving_failed)?;
        }
        Ok(())
    }
}

fn moving_failed(err: MoveError) -> ApiError {
    match err {
        MoveError::Database(err) => err.into(),
        MoveError::Valkey(_) | MoveError::Append(_) => {
            tracing::warn!(%err, "cannot move dead letters");
            ApiError::unavailable("valkey unavailable")
        }
    }
}

#[OpenApi(tag = "ApiTags::Events")]
impl DeadLettersApi {
    /// Dead letters, oldest first: stream entries that could not be counted.
    #[oai(
        path = "/api/dead-letters",
        method = "get",
        operation_id = "listDeadLetters"
    )]
    async fn list(
        &self,
        auth: ApiKey,
        /// Most letters to return (1–1000).
        limit: Limit,
        /// Only letters after this id (the last id of the previous page).
        #[oai(validator(minimum(value = "0")))]
        after: Query<Option<i64>>,
    ) -> Result<Found<Vec<DeadLetterOut>>, ApiError> {
        auth.0.require(Scope::Admin)?;
        self.import_legacy().await?;
        // Each shard's first page, merged: ids are global, so the page is
        // the `limit` lowest ids after `after` over all shards.
        let mut letters = Vec::new();
        for keys in self.0.shards.all() {
            letters.extend(dead_letter::list(&self.0.db, &keys.stream, limit.0, after.0).await?);
        }
        letters.sort_by_key(|l| l.id);
        Ok(Found::Ok(Json(
            letters
                .into_iter()
                .take(limit.0 as usize)
                .map(DeadLetterOut::from)
                .collect(),
        )))
    }

    /// Put dead letters back into the stream (after fixing their cause);
    /// those without their original bytes are deleted.
    #[oai(
        path = "/api/dead-letters/redrive",
        method = "post",
        operation_id = "redriveDeadLetters"
    )]
    async fn redrive(
        &self,
        auth: ApiKey,
        body: Json<RedriveIn>,
    ) -> Result<Found<RedriveOut>, BodyError> {
        auth.0.require(Scope::Admin)?;
        self.import_legacy().await?;
        let mut valkey = self.0.valkey.clone();
        let ids = body.ids.clone().unwrap_or_default();
        // Each letter goes back into the shard it came from.
        let mut left = body.limit.unwrap_or(10_000);
        let mut out = RedriveOut {
            redriven: 0,
            dropped: 0,
        };
        for keys in self.0.shards.all() {
            if left == 0 {
                break;
            }
            let done = dead_letter::redrive_selected(&mut valkey, &self.0.db, keys, &ids, left)
                .await
                .map_err(moving_failed)?;
            left -= done.selected as u64;
            out.redriven += done.redriven as u64;
            out.dropped += (done.selected - done.redriven) as u64;
        }
        Ok(Found::Ok(Json(out)))
    }
}
