//! Answers that name the limit: one entry per limit that applies to the
//! tenant (`quota`, `budget`, `tokensPerMinute`, `requestsPerMinute`),
//! each with what it allows, what is used and reserved of it, what
//! remains and when it resets, and, for a refusal, the limit that blocked
//! and how long until it has room again (`Retry-After`).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use domain::money::Amount;
use poem_openapi::{
    Enum, Object,
    registry::{MetaSchema, MetaSchemaRef},
    types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type},
};
use serde_json::Value;

use super::script::Figures;

/// A tenant's limits, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Enum)]
#[oai(rename_all = "camelCase")]
pub enum LimitKind {
    /// Tokens per billing period (`monthlyQuota`).
    Quota,
    /// Cost per billing period (`monthlyBudget`).
    Budget,
    /// Tokens in any 60 seconds (`tokensPerMinute`).
    TokensPerMinute,
    /// Requests in any 60 seconds (`requestsPerMinute`).
    RequestsPerMinute,
}

impl LimitKind {
    const ALL: [Self; 4] = [
        Self::Quota,
        Self::Budget,
        Self::TokensPerMinute,
        Self::RequestsPerMinute,
    ];

    /// Its bit in the script's mask.
    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// As a metric label and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Quota => "quota",
            Self::Budget => "budget",
            Self::TokensPerMinute => "tokensPerMinute",
            Self::RequestsPerMinute => "requestsPerMinute",
        }
    }
}

/// An amount of a limit: tokens or requests, or money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// Tokens or requests: a JSON integer.
    Count(i64),
    /// Micro-units of the currency: a decimal string such as `"4.700000"`
    /// (negative once over).
    Money(i64),
}

/// Money as the api shows it: a sign, digits, a point and six decimals.
const MONEY_PATTERN: &str = r"^-?[0-9]+\.[0-9]{6}$";

impl Type for Quantity {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "Quantity".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(
                "Tokens or requests as an integer; money (`budget`) as a decimal string \
                 in the deployment's currency.",
            ),
            one_of: vec![
                MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("integer", "int64"))),
                MetaSchemaRef::Inline(Box::new(MetaSchema {
                    pattern: Some(MONEY_PATTERN.to_owned()),
                    ..MetaSchema::new("string")
                })),
            ],
            ..MetaSchema::ANY
        }))
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl ToJSON for Quantity {
    fn to_json(&self) -> Option<Value> {
        Some(match *self {
            Self::Count(count) => Value::from(count),
            Self::Money(micros) => Value::String(Amount::from_micros(micros).to_string()),
        })
    }
}

/// Read back only by clients and tests: an integer, or money with six
/// decimals.
impl ParseFromJSON for Quantity {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::Number(n) => n
                .as_i64()
                .map(Self::Count)
                .ok_or_else(|| ParseError::custom("not an integer")),
            Value::String(text) => {
                let (whole, fraction) = text
                    .split_once('.')
                    .filter(|(_, f)| f.len() == 6)
                    .ok_or_else(|| ParseError::custom("not money with six decimals"))?;
                let whole: i64 = whole.parse().map_err(ParseError::custom)?;
                let fraction: i64 = fraction.parse().map_err(ParseError::custom)?;
                let sign = if text.starts_with('-') { -1 } else { 1 };
                Ok(Self::Money(whole * 1_000_000 + sign * fraction))
            }
            other => Err(ParseError::expected_type(other)),
        }
    }
}

/// One limit of the tenant, as it stood at the decision.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename_all = "camelCase")]
pub struct LimitState {
    pub kind: LimitKind,
    /// What the limit allows.
    pub limit: Quantity,
    /// Used: counted, and accepted but not yet counted. For a per-minute
    /// limit, what the requests of the last 60 seconds used (an expired
    /// reservation at its reserved size).
    pub used: Quantity,
    /// Held by live reservations (for a per-minute limit, those granted
    /// in the last 60 seconds).
    pub reserved: Quantity,
    /// `limit - used - reserved`; negative once over.
    pub remaining: Quantity,
    /// When what is used now stops counting against the limit: the end of
    /// the billing period, or, for a per-minute limit, 60 seconds after
    /// the newest request in the window (now, when it is empty).
    pub reset_at: DateTime<Utc>,
}

/// What the figures of a decision say, for a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    pub limits: Vec<LimitState>,
    /// When counted usage was read from PostgreSQL; `None` if it is not
    /// known (a decision taken without it).
    pub as_of: Option<DateTime<Utc>>,
    /// The limit that refused, if one did: of those that did, the one that
    /// has room again last.
    pub blocked_by: Option<LimitKind>,
    /// Seconds until `blocked_by` has room again (at least 1).
    pub retry_after_secs: Option<u64>,
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The limits behind `figures`, and which one blocked.
pub fn explain(figures: &Figures) -> Explained {
    let window = figures.window;
    let window_reset = if window.newest_second * 1000 + 60_000 > figures.now_ms {
        at((window.newest_second + 60) * 1000)
    } else {
        at(figures.now_ms)
    };
    // A limit of the billing period: it resets, and has room again, when
    // the period ends.
    let of_period = |quantity: fn(i64) -> Quantity, limit, used, reserved| Entry {
        quantity,
        limit,
        used,
        reserved,
        reset_at: at(figures.period_end_ms),
        room_ms: figures.period_end_ms,
    };
    // A limit of the window, whose total includes what is reserved.
    let of_window = |limit, total, reserved, room_ms: Option<i64>| Entry {
        quantity: Quantity::Count,
        limit,
        used: total - reserved,
        reserved,
        reset_at: window_reset,
        room_ms: room_ms.unwrap_or(figures.now_ms),
    };
    let known = |limit: Option<i64>| limit.filter(|_| figures.known);
    let entries = [
        known(Some(figures.quota)).map(|quota| {
            of_period(
                Quantity::Count,
                quota,
                figures.used_tokens,
                figures.reserved_tokens,
            )
        }),
        known(figures.budget_micros).map(|budget| {
            of_period(
                Quantity::Money,
                budget,
                figures.used_cost,
                figures.reserved_cost,
            )
        }),
        figures.tokens_per_minute.map(|limit| {
            of_window(
                limit,
                window.tokens,
                window.reserved_tokens,
                figures.tokens_per_minute_room_ms,
            )
        }),
        figures.requests_per_minute.map(|limit| {
            of_window(
                limit,
                window.requests,
                window.reserved_requests,
                figures.requests_per_minute_room_ms,
            )
        }),
    ];
    let mut limits = Vec::new();
    let mut room_at = Vec::new();
    for (kind, entry) in LimitKind::ALL.into_iter().zip(entries) {
        let Some(entry) = entry else {
            continue;
        };
        let quantity = entry.quantity;
        limits.push(LimitState {
            kind,
            limit: quantity(entry.limit),
            used: quantity(entry.used),
            reserved: quantity(entry.reserved),
            remaining: quantity(entry.limit - entry.used - entry.reserved),
            reset_at: entry.reset_at,
        });
        if figures.blocked & kind.bit() != 0 {
            room_at.push((entry.room_ms, kind));
        }
    }
    // The latest room; of equal ones, the first kind.
    let blocked = room_at
        .into_iter()
        .max_by(|(a, ka), (b, kb)| a.cmp(b).then(kb.cmp(ka)));
    Explained {
        limits,
        as_of: figures.base_read_ms.filter(|_| figures.known).map(at),
        blocked_by: blocked.map(|(_, kind)| kind),
        retry_after_secs: blocked.map(|(room, _)| {
            let ms = u64::try_from(room - figures.now_ms).unwrap_or(0).max(1);
            ms.div_ceil(1000)
        }),
    }
}

/// One limit's figures, before they are shown.
struct Entry {
    quantity: fn(i64) -> Quantity,
    limit: i64,
    used: i64,
    reserved: i64,
    reset_at: DateTime<Utc>,
    /// When it has room again, if it blocks (ms).
    room_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::script::{Status, Window};

    fn figures() -> Figures {
        Figures {
            status: Status::Refused,
            now_ms: 1_000_000_500,
            expires_ms: None,
            known: true,
            base_read_ms: Some(1_000_000_000),
            period_start_ms: 0,
            period_end_ms: 2_000_000_000,
            quota: 100_000,
            budget_micros: Some(5_000_000),
            tokens_per_minute: Some(10_000),
            requests_per_minute: None,
            used_tokens: 90_000,
            reserved_tokens: 8_000,
            used_cost: 4_700_000,
            reserved_cost: 100_000,
            window: Window {
                tokens: 9_000,
                reserved_tokens: 8_000,
                requests: 9,
                reserved_requests: 8,
                newest_second: 1_000_000,
            },
            blocked: 0,
            tokens_per_minute_room_ms: None,
            requests_per_minute_room_ms: None,
            expired: 0,
        }
    }

    #[test]
    fn each_limit_that_applies_has_an_entry() {
        let explained = explain(&figures());
        let kinds: Vec<LimitKind> = explained.limits.iter().map(|l| l.kind).collect();
        assert_eq!(
            kinds,
            [
                LimitKind::Quota,
                LimitKind::Budget,
                LimitKind::TokensPerMinute
            ]
        );
        let quota = &explained.limits[0];
        assert_eq!(quota.remaining, Quantity::Count(2_000));
        assert_eq!(quota.reset_at, at(2_000_000_000));
        let budget = &explained.limits[1];
        assert_eq!(
            budget.remaining.to_json(),
            Some(Value::String("0.200000".into()))
        );
        let tpm = &explained.limits[2];
        assert_eq!(
            (tpm.used, tpm.reserved, tpm.remaining),
            (
                Quantity::Count(1_000),
                Quantity::Count(8_000),
                Quantity::Count(1_000)
            )
        );
        assert_eq!(tpm.reset_at, at(1_000_060_000));
        assert_eq!(explained.as_of, Some(at(1_000_000_000)));
        assert_eq!(explained.blocked_by, None);
    }

    #[test]
    fn the_limit_with_room_last_is_the_one_named() {
        let refused = Figures {
            blocked: 1 | 4,
            tokens_per_minute_room_ms: Some(1_000_030_000),
            ..figures()
        };
        let explained = explain(&refused);
        assert_eq!(explained.blocked_by, Some(LimitKind::Quota));
        assert_eq!(explained.retry_after_secs, Some(1_000_000));
        let per_minute_only = Figures {
            blocked: 4,
            ..refused
        };
        let explained = explain(&per_minute_only);
        assert_eq!(explained.blocked_by, Some(LimitKind::TokensPerMinute));
        assert_eq!(explained.retry_after_secs, Some(30));
    }

    #[test]
    fn without_counted_usage_only_the_per_minute_limits_are_known() {
        let unknown = Figures {
            known: false,
            ..figures()
        };
        let explained = explain(&unknown);
        assert_eq!(explained.limits.len(), 1);
        assert_eq!(explained.as_of, None);
    }

    #[test]
    fn money_reads_back_as_it_was_written() {
        for quantity in [
            Quantity::Money(-1_250_000),
            Quantity::Money(4_700_001),
            Quantity::Count(-3),
        ] {
            assert_eq!(
                Quantity::parse_from_json(quantity.to_json()).unwrap(),
                quantity
            );
        }
    }
}
