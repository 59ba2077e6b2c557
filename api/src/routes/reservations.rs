//! `POST /api/reservations` and `DELETE /api/reservations/{id}`: room held
//! for a model call before it is made, so that parallel calls cannot all
//! pass a limit that only has room for some (see [`crate::limits`]).
//!
//! The flow: reserve the call's estimate (prompt + `max_tokens`) → make
//! the call → send its event with `reservationId` (which settles the
//! reservation: its room passes to the event), or release the reservation
//! if the call was not made. A reservation neither settled nor released
//! expires at `expiresAt`.

use chrono::{DateTime, Utc};
use domain::validate::{self, TokenClasses};
use poem::{IntoResponse, Response, http::StatusCode};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::Path,
    payload::Json,
    registry::{MetaMediaType, MetaResponses, MetaSchema, MetaSchemaRef, Registry},
    types::{Example, Type},
};

use super::{
    ApiTags, invalid,
    rules::{EventId, FeatureName, TenantSlug},
};
use crate::{
    auth::{ApiKey, Scope},
    body::Body,
    error::{ApiError, BodyError, ErrorBody, ErrorDetails},
    limits::{self, Ask, LimitKind, LimitState, Status, explain},
    msgpack::JsonOrMsgPack,
    state::AppState,
};

/// How long a reservation lives by default, and at most.
const DEFAULT_TTL_SECONDS: i64 = 60;
const MAX_TTL_SECONDS: i64 = 900;

/// Room to hold for one model call.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct ReservationIn {
    /// The tenant making the call: 1–64 of `[A-Za-z0-9._-]`, starting with
    /// a letter or digit.
    pub tenant: TenantSlug,
    /// The call's estimate: prompt tokens + `max_tokens` (1 to
    /// 1,000,000,000). With token classes, their sum.
    #[oai(validator(minimum(value = "1"), maximum(value = "1000000000")))]
    pub tokens: i64,
    /// The model or feature the call uses, for its price against a
    /// budget; without it, the dearest price in force is assumed.
    #[oai(nullable)]
    pub feature: Option<FeatureName>,
    /// Estimated input (prompt) tokens, from 0 to 1,000,000,000.
    #[oai(
        nullable,
        validator(minimum(value = "0"), maximum(value = "1000000000"))
    )]
    pub input_tokens: Option<i64>,
    /// Estimated output tokens, from 0 to 1,000,000,000.
    #[oai(
        nullable,
        validator(minimum(value = "0"), maximum(value = "1000000000"))
    )]
    pub output_tokens: Option<i64>,
    /// Estimated prompt-cache reads, from 0 to 1,000,000,000.
    #[oai(
        nullable,
        validator(minimum(value = "0"), maximum(value = "1000000000"))
    )]
    pub cache_read_tokens: Option<i64>,
    /// Estimated prompt-cache writes, from 0 to 1,000,000,000.
    #[oai(
        nullable,
        validator(minimum(value = "0"), maximum(value = "1000000000"))
    )]
    pub cache_write_tokens: Option<i64>,
    /// Seconds until an unsettled reservation expires (1–900, default 60).
    #[oai(nullable, validator(minimum(value = "1"), maximum(value = "900")))]
    pub ttl_seconds: Option<i64>,
    /// Idempotency key, 1–128 printable ASCII characters: a request sent
    /// again with the same `id` gets the same reservation back (until it
    /// has been expired for a minute). Generated when absent.
    #[oai(nullable)]
    pub id: Option<EventId>,
}

impl Body for ReservationIn {}

impl Example for ReservationIn {
    fn example() -> Self {
        Self {
            tenant: TenantSlug("acme-corp".to_owned()),
            tokens: 5_000,
            feature: Some(FeatureName("gpt-4o".to_owned())),
            input_tokens: None,
            output_tokens: None,
            cache_read_tokens: None,
            cache_write_tokens: None,
            ttl_seconds: Some(60),
            id: Some(EventId("call-7f3a".to_owned())),
        }
    }
}

impl ReservationIn {
    /// The reservation asked for, if it obeys every rule (a 400 naming the
    /// field if not).
    fn into_ask(self) -> Result<Ask, ApiError> {
        let classes = TokenClasses {
            input: self.input_tokens,
            output: self.output_tokens,
            cache_read: self.cache_read_tokens,
            cache_write: self.cache_write_tokens,
        };
        let tokens = validate::event_tokens(Some(self.tokens), &classes)
            .map_err(|refused| invalid(refused.field, refused.reason))?;
        let key = match self.id {
            Some(id) => {
                validate::event_id(&id).map_err(|refused| invalid("id", refused.reason))?;
                id.0
            }
            None => uuid::Uuid::now_v7().to_string(),
        };
        let ttl = self.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
        if !(1..=MAX_TTL_SECONDS).contains(&ttl) {
            return Err(invalid("ttlSeconds", "must be from 1 to 900"));
        }
        Ok(Ask {
            tenant: self.tenant.0,
            key,
            tokens,
            feature: self.feature.map(|f| f.0),
            classes,
            ttl: std::time::Duration::from_secs(ttl.unsigned_abs()),
        })
    }
}

/// A granted reservation.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Reservation {
    /// Send it as the call's event's `reservationId` (which settles the
    /// reservation), or release it with `DELETE /api/reservations/{id}`.
    pub reservation_id: String,
    /// Always `true`: the room is held.
    pub allowed: bool,
    /// When the reservation stops holding room unless settled first.
    pub expires_at: DateTime<Utc>,
    /// Every limit of the tenant, the reservation included.
    pub limits: Vec<LimitState>,
    /// When counted usage was read from PostgreSQL (older than usual while
    /// it is unavailable); absent if it could not be read at all.
    #[oai(skip_serializing_if_is_none)]
    pub as_of: Option<DateTime<Utc>>,
}

/// A reservation refused: a limit has no room for it.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Refusal {
    /// What went wrong, in a few words.
    pub error: String,
    /// Always `false`.
    pub allowed: bool,
    /// The limit that refused (of several, the one with room last).
    pub blocked_by: LimitKind,
    /// Every limit of the tenant, without the refused reservation.
    pub limits: Vec<LimitState>,
    /// When counted usage was read from PostgreSQL.
    #[oai(skip_serializing_if_is_none)]
    pub as_of: Option<DateTime<Utc>>,
}

/// The answer of a granted reservation.
#[derive(ApiResponse)]
pub enum Reserved {
    /// Granted (or, for an `id` sent before, granted then): the room is
    /// held until `expiresAt`.
    #[oai(status = 201)]
    Created(Json<Reservation>),
}

/// The answer of a release.
#[derive(ApiResponse)]
pub enum Released {
    /// Released (or already ended, or unknown): it holds no room.
    #[oai(status = 204)]
    Released,
}

/// The errors of `POST /api/reservations`: those of every body route, and
/// the refusal of a limit, which shares the 429 of the key's rate limit
/// (told apart by `blockedBy`).
#[derive(Debug)]
pub enum ReserveError {
    Refused(Refusal, u64),
    Other(BodyError),
}

impl<E: Into<BodyError>> From<E> for ReserveError {
    fn from(err: E) -> Self {
        Self::Other(err.into())
    }
}

impl IntoResponse for ReserveError {
    fn into_response(self) -> Response {
        match self {
            Self::Refused(refusal, retry_after) => Json(refusal)
                .with_status(StatusCode::TOO_MANY_REQUESTS)
                .with_header("Retry-After", retry_after.to_string())
                .into_response(),
            Self::Other(err) => err.into_response(),
        }
    }
}

impl From<ReserveError> for poem::Error {
    fn from(err: ReserveError) -> Self {
        poem::Error::from_response(err.into_response())
    }
}

impl ApiResponse for ReserveError {
    fn meta() -> MetaResponses {
        let mut meta = BodyError::meta();
        for response in &mut meta.responses {
            if response.status == Some(429) {
                response.description = "A limit of the tenant has no room for the \
                    reservation (`blockedBy` names it), or the key is over its rate \
                    limit. Retry after the number of seconds in `Retry-After`.";
                response.content = vec![MetaMediaType {
                    content_type: "application/json; charset=utf-8",
                    schema: MetaSchemaRef::Inline(Box::new(MetaSchema {
                        any_of: vec![
                            <Refusal as Type>::schema_ref(),
                            <ErrorBody as Type>::schema_ref(),
                        ],
                        ..MetaSchema::ANY
                    })),
                }];
            }
        }
        meta
    }

    fn register(registry: &mut Registry) {
        BodyError::register(registry);
        Refusal::register(registry);
    }
}

/// The routes below, over the shared state.
pub struct ReservationsApi(pub AppState);

#[OpenApi(tag = "ApiTags::Limits")]
impl ReservationsApi {
    /// Reserve room for a model call before making it: granted only if
    /// counted usage, events not yet counted, live reservations and this
    /// one fit every limit of the tenant (quota, budget, per-minute
    /// limits), atomically across api replicas.
    #[oai(
        path = "/api/reservations",
        method = "post",
        operation_id = "createReservation"
    )]
    async fn reserve(
        &self,
        auth: ApiKey,
        body: JsonOrMsgPack<ReservationIn>,
    ) -> Result<Reserved, ReserveError> {
        auth.0.require_for(Scope::Ingest, &body.tenant)?;
        let ask = body.0.into_ask()?;
        let figures = self.0.limits.reserve(&self.0, &ask).await?;
        let explained = explain(&figures);
        match (figures.status, figures.expires_ms, explained.blocked_by) {
            (Status::Granted | Status::Replayed, Some(expires_ms), _) => {
                Ok(Reserved::Created(Json(Reservation {
                    reservation_id: limits::reservation_id(&ask.tenant, &ask.key),
                    allowed: true,
                    expires_at: DateTime::from_timestamp_millis(expires_ms).unwrap_or_default(),
                    limits: explained.limits,
                    as_of: explained.as_of,
                })))
            }
            (Status::Refused, _, Some(blocked_by)) => Err(ReserveError::Refused(
                Refusal {
                    error: format!("no room: {}", blocked_by.name()),
                    allowed: false,
                    blocked_by,
                    limits: explained.limits,
                    as_of: explained.as_of,
                },
                explained.retry_after_secs.unwrap_or(1),
            )),
            (status, ..) => {
                tracing::error!(?status, "the limits script answered a reservation oddly");
                Err(ApiError::Internal(ErrorBody::new("internal error", None)).into())
            }
        }
    }

    /// Release a reservation whose call was not made: it stops holding
    /// room at once. Idempotent: a settled, released, expired or unknown
    /// reservation is answered 204 as well.
    #[oai(
        path = "/api/reservations/:id",
        method = "delete",
        operation_id = "releaseReservation"
    )]
    async fn release(
        &self,
        auth: ApiKey,
        /// The `reservationId` a reservation was granted with: its tenant,
        /// a colon, and its key.
        #[oai(validator(
            max_length = 200,
            pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}:[\x20-\x7e]+$"
        ))]
        id: Path<String>,
    ) -> Result<Released, ApiError> {
        let Some((tenant, key)) = id
            .split_once(':')
            .filter(|(tenant, key)| validate::tenant(tenant).is_ok() && !str::is_empty(key))
        else {
            return Err(ApiError::bad_request(
                "invalid reservation id",
                ErrorDetails::field("id", "is not a reservationId"),
            ));
        };
        auth.0.require_for(Scope::Ingest, tenant)?;
        self.0.limits.release(&self.0, tenant, key).await?;
        Ok(Released::Released)
    }
}
