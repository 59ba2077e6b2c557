//! `GET /api/events`: the event explorer, a tenant's counted events from the
//! ledger ([`store::ledger`]), newest first, a page at a time.
//!
//! The cursor is opaque to clients: base64url of the last row's event time
//! (microseconds) and id, so that the next page starts right below it
//! (keyset pagination: as fast on page 1,000 as on page 1). A key bound to
//! a tenant sees that tenant only.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use poem_openapi::{Object, payload::Json};
use sea_orm::FromQueryResult;
use store::ledger::{self, After, EventQuery};

use super::{Found, invalid, usage::TokensByClass};
use crate::{
    auth::{ApiKey, Scope},
    error::ApiError,
    state::AppState,
};

/// One counted event, read from the ledger as it is answered.
#[derive(Debug, Object, FromQueryResult)]
#[oai(rename_all = "camelCase")]
pub struct ExploredEvent {
    /// The client's event id (or the one generated on receipt).
    pub id: String,
    pub feature: String,
    /// All the event's tokens; the four classes are 0 for an unclassified
    /// event (one sent with `tokens` alone, priced at the input price).
    pub tokens: i64,
    #[oai(flatten)]
    #[sea_orm(nested)]
    pub classes: TokensByClass,
    /// Event time.
    pub occurred_at: DateTime<Utc>,
    /// When the api accepted it.
    pub received_at: DateTime<Utc>,
    /// Voided (`POST /api/events/void`): its tokens no longer count.
    pub voided: bool,
}

/// A page of events, newest first.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct EventPage {
    pub events: Vec<ExploredEvent>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next_cursor: Option<String>,
}

/// The cursor of the page after the event at `occurred_at` with `id`.
fn cursor_after(occurred_at: DateTime<Utc>, id: &str) -> String {
    let raw = format!("{}:{id}", occurred_at.timestamp_micros());
    URL_SAFE_NO_PAD.encode(raw)
}

/// Reads a cursor back; `None` if it is not one this api made.
fn parse_cursor(cursor: &str) -> Option<After> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (micros, id) = raw.split_once(':')?;
    domain::validate::event_id(id).ok()?;
    Some(After {
        occurred_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        id: id.to_owned(),
    })
}

/// One page of `GET /api/events` (whose query parameters are documented on
/// the route in [`super::events`], which shares its path with ingest:
/// poem-openapi documents one path from one API only): `query` as asked,
/// starting below `cursor`.
pub async fn list(
    state: &AppState,
    auth: &ApiKey,
    mut query: EventQuery,
    cursor: Option<&str>,
) -> Result<Found<EventPage>, ApiError> {
    auth.0.require_for(Scope::Read, &query.tenant)?;
    if let Some(raw) = cursor {
        query.after = Some(parse_cursor(raw).ok_or_else(|| {
            invalid(
                "cursor",
                "not a cursor of this api (use nextCursor as given)",
            )
        })?);
    }
    let limit = query.limit;
    // One more than asked tells whether a next page exists.
    query.limit += 1;
    let mut rows: Vec<ExploredEvent> = ledger::list_events(&state.db, &query).await?;
    let next_cursor = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last()
            .map(|last| cursor_after(last.occurred_at, &last.id))
    } else {
        None
    };
    Ok(Found::Ok(Json(EventPage {
        events: rows,
        next_cursor,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_and_garbage_does_not() {
        let occurred_at = DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap();
        let after = parse_cursor(&cursor_after(occurred_at, "call:7f/3a")).unwrap();
        assert_eq!(
            (after.occurred_at, after.id.as_str()),
            (occurred_at, "call:7f/3a")
        );
        for bad in ["", "!!", "bm90LWEtY3Vyc29y", "eDpfaWQ"] {
            assert!(parse_cursor(bad).is_none(), "{bad}");
        }
    }
}
