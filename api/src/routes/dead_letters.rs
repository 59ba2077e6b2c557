//! `GET /api/dead-letters` and `POST /api/dead-letters/redrive` (admin):
//! the stream entries that could not be counted, and putting them back once
//! their cause is fixed. The same logic as the pipeline's
//! `dead-letters list|redrive` CLI ([`store::dead_letter`]), including
//! moving in letters an earlier version left in `{stream}:dead` first.

use chrono::{DateTime, Utc};
use poem_openapi::{
    Enum, Object, OpenApi,
    param::Query,
    payload::Json,
    types::{Example, ParseFromParameter},
};
use store::dead_letter::{self, MoveError, StoredLetter};

use super::{ApiTags, Found, invalid, paging::Limit};
use crate::{
    auth::{ApiKey, Scope},
    body::Body,
    error::{ApiError, BodyError},
    msgpack::JsonOrMsgPack,
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
    pub kind: DeadLetterKind,
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

/// Why a stream entry was set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum DeadLetterKind {
    /// Its bytes could not be decoded.
    Undecodable,
    /// PostgreSQL refused it.
    Refused,
    /// It was delivered too often without being counted.
    Redelivered,
    /// It was moved in from an earlier version's dead-letter stream.
    Imported,
}

impl DeadLetterKind {
    /// The kind a letter is stored with (`store::dead_letter`); `None` for
    /// one this version does not know.
    fn parse(stored: &str) -> Option<Self> {
        Self::parse_from_parameter(stored).ok()
    }
}

impl TryFrom<StoredLetter> for DeadLetterOut {
    type Error = ApiError;

    /// A letter of a kind this version does not know (written by a newer
    /// pipeline) is an unexpected failure, logged.
    fn try_from(l: StoredLetter) -> Result<Self, ApiError> {
        let kind = DeadLetterKind::parse(&l.kind).ok_or_else(|| {
            ApiError::internal(&std::io::Error::other(format!(
                "dead letter {} has the unknown kind {:?}",
                l.id, l.kind
            )))
        })?;
        Ok(Self {
            id: l.id,
            stream_id: l.original_id,
            kind,
            reason: l.reason,
            attempts: l.deliveries as i64,
            consumer: l.consumer,
            has_payload: l.payload.is_some(),
            created_at: l.created_at,
        })
    }
}

/// Which dead letters to re-drive: `{"ids": [17, 18]}` for those, or
/// `{"all": true}` (with an optional `limit`) for every one, oldest first.
#[derive(Debug, Object)]
#[oai(example)]
pub struct RedriveIn {
    /// Ids as listed.
    #[oai(nullable, validator(min_items = 1, max_items = 10000))]
    pub ids: Option<Vec<i64>>,
    /// `true` to re-drive every dead letter (up to `limit`, oldest first).
    #[oai(nullable)]
    pub all: Option<bool>,
    /// With `all`: most letters to re-drive (1–10,000, default 10,000).
    #[oai(nullable, validator(minimum(value = "1"), maximum(value = "10000")))]
    pub limit: Option<u64>,
}

impl Body for RedriveIn {}

impl Example for RedriveIn {
    fn example() -> Self {
        Self {
            ids: Some(vec![17, 18]),
            all: None,
            limit: None,
        }
    }
}

/// The most letters one re-drive moves.
const MAX_REDRIVE: u64 = 10_000;

/// The letters a [`RedriveIn`] selects.
#[derive(Debug, PartialEq, Eq)]
enum Selection {
    /// These ids.
    Ids(Vec<i64>),
    /// Every letter, the oldest `limit`.
    All { limit: u64 },
}

impl TryFrom<RedriveIn> for Selection {
    type Error = ApiError;

    /// Re-driving every letter takes an explicit `"all": true`: any other
    /// body without ids (an event sent to the wrong route, say) is refused.
    fn try_from(body: RedriveIn) -> Result<Self, ApiError> {
        match body {
            RedriveIn {
                ids: Some(_),
                all: Some(_),
                ..
            } => Err(invalid(
                "all",
                "cannot be given with ids: send one or the other",
            )),
            RedriveIn {
                ids: Some(_),
                limit: Some(_),
                ..
            } => Err(invalid("limit", "applies only with \"all\": true")),
            RedriveIn { ids: Some(ids), .. } => Ok(Self::Ids(ids)),
            RedriveIn {
                all: Some(true),
                limit,
                ..
            } => Ok(Self::All {
                limit: limit.unwrap_or(MAX_REDRIVE),
            }),
            RedriveIn {
                all: Some(false), ..
            } => Err(invalid(
                "all",
                "must be true to re-drive every letter; to re-drive some, send their ids",
            )),
            RedriveIn { all: None, .. } => Err(invalid(
                "ids",
                "is required: send the ids to re-drive, or \"all\": true for every letter",
            )),
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
                .map(DeadLetterOut::try_from)
                .collect::<Result<_, _>>()?,
        )))
    }

    /// Put dead letters back into the stream (after fixing their cause):
    /// those named by `ids`, or every one with `"all": true`. Those without
    /// their original bytes are deleted.
    #[oai(
        path = "/api/dead-letters/redrive",
        method = "post",
        operation_id = "redriveDeadLetters"
    )]
    async fn redrive(
        &self,
        auth: ApiKey,
        body: JsonOrMsgPack<RedriveIn>,
    ) -> Result<Found<RedriveOut>, BodyError> {
        auth.0.require(Scope::Admin)?;
        let (ids, mut left) = match Selection::try_from(body.0)? {
            Selection::Ids(ids) => (ids, MAX_REDRIVE),
            Selection::All { limit } => (Vec::new(), limit),
        };
        self.import_legacy().await?;
        let mut valkey = self.0.valkey.clone();
        // Each letter goes back into the shard it came from.
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

#[cfg(test)]
mod tests {
    use super::DeadLetterKind;

    /// The kinds the pipeline and the store write.
    #[test]
    fn every_stored_kind_is_known() {
        for stored in ["undecodable", "refused", "redelivered", "imported"] {
            assert!(DeadLetterKind::parse(stored).is_some(), "{stored}");
        }
        assert_eq!(DeadLetterKind::parse("later"), None);
    }
}
