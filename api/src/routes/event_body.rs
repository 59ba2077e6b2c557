//! The bodies of `POST /api/events` and `POST /api/events/batch`: what a
//! client's event is, as the spec states it, and the two ways it is read.
//!
//! The checked reading ([`crate::body`]: a strict JSON value, checked
//! against the schema, then the typed parse) is the rule book: it states
//! the schema and words every refusal. Most bodies are valid, though, and
//! for them the JSON value is pure cost (a map, its keys and its strings
//! allocated per event, then copied again), so these bodies are first read
//! straight from the bytes ([`Deserialize`], below, as [`Body::direct`]).
//! That reading accepts only bodies the checked reading accepts, with the
//! same values, and gives up on anything else: a duplicate or unknown key,
//! a value of another type, a number out of range, an invalid tenant or
//! feature, a timestamp that does not parse. A body it gives up on takes
//! the checked reading, which refuses it (or accepts it), so no refusal is
//! worded twice. The unit tests hold the two readings side by side.

use std::fmt;

use chrono::{DateTime, Utc};
use domain::validate::{self, Invalid, MAX_TOKENS, TokenClasses};
use poem_openapi::{Object, types::Example};
use serde::{
    Deserialize, Deserializer,
    de::{self, Error as _, MapAccess, Visitor},
};

use super::rules::{EventId, FeatureName, TenantSlug};
use stream::EventRecord;

use crate::{
    body::{Body, Format, unpack},
    ingest::Submission,
};

/// Both event bodies are read straight from their bytes when they can be.
fn direct<T: for<'de> Deserialize<'de>>(format: Format, bytes: &[u8]) -> Option<T> {
    match format {
        Format::Json => serde_json::from_slice(bytes).ok(),
        Format::MsgPack => unpack::decode(bytes).ok(),
    }
}

impl Body for EventIn {
    fn direct(format: Format, bytes: &[u8]) -> Option<Self> {
        direct(format, bytes)
    }
}

impl Body for BatchIn {
    fn direct(format: Format, bytes: &[u8]) -> Option<Self> {
        direct(format, bytes)
    }
}

/// One usage event.
// The character rules of `tenant`, `feature` and `id` are in the spec as
// `pattern`s (`super::rules`), but not as poem-openapi validators, which
// compile their regex on every request (that cost more than half the api's
// CPU under load): they are checked with the domain rules
// (`domain::validate`), whose 400 names the field.
#[derive(Debug, PartialEq, Object)]
#[oai(example, rename_all = "camelCase")]
pub struct EventIn {
    /// Tenant slug: 1–64 of `[A-Za-z0-9._-]`, starting with a letter or digit.
    /// A tenant never seen before is created with the default quota.
    pub tenant: TenantSlug,
    /// Model or product feature, e.g. `anthropic/claude-3.5-sonnet`:
    /// 1–128 printable ASCII characters without spaces.
    pub feature: FeatureName,
    /// Tokens used, from 1 to 1,000,000,000. Optional when token classes
    /// are given (it is then their sum); when both are given it must equal
    /// their sum. An event with `tokens` alone is unclassified (priced at
    /// the input price).
    #[oai(
        nullable,
        validator(minimum(value = "1"), maximum(value = "1000000000"))
    )]
    pub tokens: Option<i64>,
    /// Input (prompt) tokens, from 0 to 1,000,000,000.
    #[oai(
        nullable,
        validator(minimum(value = "0"), maximum(value = "1000000000"))
    )]
    pub input_tokens: Option<i64>,
    /// Output (completion) tokens, from 0 to 1,000,000,000.
    #[oai(
        nullable,
        validator(minimum(value = "0"), maximum(value = "1000000000"))
    )]
    pub output_tokens: Option<i64>,
    /// Input tokens read from the provider's prompt cache, from 0 to
    /// 1,000,000,000.
    #[oai(
        nullable,
        validator(minimum(value = "0"), maximum(value = "1000000000"))
    )]
    pub cache_read_tokens: Option<i64>,
    /// Input tokens written to the provider's prompt cache, from 0 to
    /// 1,000,000,000.
    #[oai(
        nullable,
        validator(minimum(value = "0"), maximum(value = "1000000000"))
    )]
    pub cache_write_tokens: Option<i64>,
    /// Client event id, 1–128 printable ASCII characters: the idempotency
    /// key. Sending the same id for a tenant again counts it once. Generated
    /// (UUIDv7) when absent.
    #[oai(nullable)]
    pub id: Option<EventId>,
    /// Event time (RFC 3339); at most 35 days in the past and 5 minutes in
    /// the future. Defaults to the time of receipt.
    #[oai(nullable)]
    pub timestamp: Option<DateTime<Utc>>,
    /// The `reservationId` of the reservation this call was made under
    /// (`POST /api/reservations`): accepting the event settles it, and the
    /// event's own tokens hold the room from then on. An unknown or
    /// expired one changes nothing: the event is accepted and counted.
    /// 1–200 printable ASCII characters.
    #[oai(nullable, validator(min_length = 1, max_length = 200))]
    pub reservation_id: Option<String>,
}

impl Example for EventIn {
    fn example() -> Self {
        Self {
            tenant: TenantSlug("acme-corp".to_owned()),
            feature: FeatureName("gpt-4-turbo".to_owned()),
            tokens: Some(1500),
            input_tokens: None,
            output_tokens: None,
            cache_read_tokens: None,
            cache_write_tokens: None,
            id: None,
            timestamp: None,
            reservation_id: None,
        }
    }
}

impl Submission for EventIn {
    const KIND: &'static str = "event";

    fn tenant(&self) -> &str {
        &self.tenant
    }

    fn reservation(&self) -> Option<&str> {
        self.reservation_id.as_deref()
    }

    /// Applies every rule and builds the stream record, its strings moved;
    /// a missing id becomes a UUIDv7 (time-ordered, so the ledger index
    /// stays compact), a missing timestamp the receipt time.
    fn into_record(self, now: DateTime<Utc>) -> Result<EventRecord, Invalid> {
        let classes = TokenClasses {
            input: self.input_tokens,
            output: self.output_tokens,
            cache_read: self.cache_read_tokens,
            cache_write: self.cache_write_tokens,
        };
        validate::tenant(&self.tenant)?;
        validate::feature(&self.feature)?;
        let tokens = validate::event_tokens(self.tokens, &classes)?;
        if let Some(id) = &self.id {
            validate::event_id(id)?;
        }
        let occurred = self.timestamp.unwrap_or(now);
        validate::occurred_at(occurred, now)?;
        if let Some(reservation) = &self.reservation_id {
            crate::limits::check_reservation_id(reservation)?;
        }
        Ok(EventRecord::new(
            self.id
                .map_or_else(|| uuid::Uuid::now_v7().to_string(), |id| id.0),
            self.tenant.0,
            self.feature.0,
            tokens,
            occurred.timestamp_millis(),
            now.timestamp_millis(),
        )
        .with_classes(classes))
    }
}

/// Up to 1000 events, stored all together or not at all.
#[derive(Debug, PartialEq, Object)]
#[oai(example)]
pub struct BatchIn {
    #[oai(validator(min_items = 1, max_items = 1000))]
    pub events: Vec<EventIn>,
}

impl Example for BatchIn {
    fn example() -> Self {
        Self {
            events: vec![EventIn::example()],
        }
    }
}

/// The most events one batch may hold.
const MAX_BATCH: usize = 1000;

/// The keys of an event body; any other key is `Other`, which the direct
/// reading gives up on.
enum Key {
    Tenant,
    Feature,
    Tokens,
    InputTokens,
    OutputTokens,
    CacheReadTokens,
    CacheWriteTokens,
    Id,
    Timestamp,
    ReservationId,
    Events,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        from_str(deserializer, "a string key", |key| match key {
            "tenant" => Key::Tenant,
            "feature" => Key::Feature,
            "tokens" => Key::Tokens,
            "inputTokens" => Key::InputTokens,
            "outputTokens" => Key::OutputTokens,
            "cacheReadTokens" => Key::CacheReadTokens,
            "cacheWriteTokens" => Key::CacheWriteTokens,
            "id" => Key::Id,
            "timestamp" => Key::Timestamp,
            "reservationId" => Key::ReservationId,
            "events" => Key::Events,
            _ => Key::Other,
        })
    }
}

/// A string, and only a string: never a number's or a byte string's text
/// (as the checked reading).
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        from_str(deserializer, "a string", |text| Text(text.to_owned()))
    }
}

/// Deserializes a string, and nothing else, into what `read` makes of it;
/// `expecting` words the refusal of anything else. The keys and the
/// strings of a body are read this way.
fn from_str<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    expecting: &'static str,
    read: impl FnOnce(&str) -> T,
) -> Result<T, D::Error> {
    struct StrVisitor<F> {
        expecting: &'static str,
        read: F,
    }
    impl<T, F: FnOnce(&str) -> T> Visitor<'_> for StrVisitor<F> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.expecting)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
            Ok((self.read)(text))
        }
    }
    deserializer.deserialize_str(StrVisitor { expecting, read })
}

/// Reads the next value into `slot`; a key given twice gives up (the
/// checked reading refuses it).
fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(A::Error::custom("key given twice"));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// Whether an optional token count is within `min..=MAX_TOKENS`, the
/// validators on [`EventIn`].
fn in_range(count: Option<i64>, min: i64) -> bool {
    count.is_none_or(|count| (min..=MAX_TOKENS).contains(&count))
}

fn give_up<E: de::Error>() -> E {
    E::custom("left to the checked reading")
}

/// An event read straight from its bytes; see the module docs.
impl<'de> Deserialize<'de> for EventIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EventVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = EventIn;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EventIn, A::Error> {
        let (mut tenant, mut feature, mut id, mut timestamp) = (None, None, None, None);
        let mut reservation_id = None;
        let mut counts: [Option<Option<i64>>; 5] = Default::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Tenant => once(&mut map, &mut tenant)?,
                Key::Feature => once(&mut map, &mut feature)?,
                Key::Tokens => once(&mut map, &mut counts[0])?,
                Key::InputTokens => once(&mut map, &mut counts[1])?,
                Key::OutputTokens => once(&mut map, &mut counts[2])?,
                Key::CacheReadTokens => once(&mut map, &mut counts[3])?,
                Key::CacheWriteTokens => once(&mut map, &mut counts[4])?,
                Key::Id => once::<_, Option<Text>>(&mut map, &mut id)?,
                Key::Timestamp => once::<_, Option<Text>>(&mut map, &mut timestamp)?,
                Key::ReservationId => once::<_, Option<Text>>(&mut map, &mut reservation_id)?,
                Key::Events | Key::Other => return Err(give_up()),
            }
        }
        let Text(tenant) = tenant.ok_or_else(give_up)?;
        let Text(feature) = feature.ok_or_else(give_up)?;
        let [tokens, input, output, cache_read, cache_write] = counts.map(Option::flatten);
        let classes_in_range = [input, output, cache_read, cache_write]
            .into_iter()
            .all(|count| in_range(count, 0));
        if !in_range(tokens, 1) || !classes_in_range {
            return Err(give_up());
        }
        let timestamp = match timestamp.flatten() {
            Some(Text(text)) => Some(text.parse::<DateTime<Utc>>().map_err(|_| give_up())?),
            None => None,
        };
        Ok(EventIn {
            tenant: TenantSlug::parse(tenant).map_err(|_| give_up())?,
            feature: FeatureName::parse(feature).map_err(|_| give_up())?,
            tokens,
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
            id: match id.flatten() {
                Some(Text(id)) if validate::event_id(&id).is_ok() => Some(EventId(id)),
                Some(_) => return Err(give_up()),
                None => None,
            },
            timestamp,
            reservation_id: match reservation_id.flatten() {
                Some(Text(text)) if (1..=200).contains(&text.chars().count()) => Some(text),
                Some(_) => return Err(give_up()),
                None => None,
            },
        })
    }
}

/// A batch read straight from its bytes; see the module docs.
impl<'de> Deserialize<'de> for BatchIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BatchVisitor;
        impl<'de> Visitor<'de> for BatchVisitor {
            type Value = BatchIn;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a batch object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BatchIn, A::Error> {
                let mut events: Option<Vec<EventIn>> = None;
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Events => once(&mut map, &mut events)?,
                        _ => return Err(give_up()),
                    }
                }
                match events {
                    Some(events) if (1..=MAX_BATCH).contains(&events.len()) => {
                        Ok(BatchIn { events })
                    }
                    _ => Err(give_up()),
                }
            }
        }
        deserializer.deserialize_map(BatchVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{checked, unpack::decode};
    use serde_json::{Value, json};

    /// Reads `body` (JSON text) both ways, and as MessagePack both ways:
    /// the direct reading gives up or agrees with the checked reading.
    /// Returns whether the direct reading took it (in both formats alike).
    fn agree<T>(body: &str) -> bool
    where
        T: Body + for<'de> Deserialize<'de> + PartialEq + fmt::Debug,
    {
        let taken = formats_agree::<T>(Format::Json, body.as_bytes());
        let Ok(value) = serde_json::from_str::<Value>(body) else {
            return taken;
        };
        // (Its MessagePack twin has lost any repeated key.)
        let bytes = rmp_serde::to_vec_named(&value).unwrap();
        assert!(
            formats_agree::<T>(Format::MsgPack, &bytes) || !taken,
            "MessagePack {body}"
        );
        taken
    }

    /// [`agree`] for one format's bytes.
    fn formats_agree<T>(format: Format, bytes: &[u8]) -> bool
    where
        T: Body + PartialEq + fmt::Debug,
    {
        let checked = checked::<T>(format, bytes).ok();
        let direct = T::direct(format, bytes);
        if let Some(direct) = &direct {
            assert_eq!(Some(direct), checked.as_ref(), "{format:?} {bytes:x?}");
        }
        direct.is_some()
    }

    /// An event of `tenant` with 1500 tokens, nothing else given.
    fn event(tenant: &str) -> EventIn {
        EventIn {
            tenant: TenantSlug(tenant.to_owned()),
            ..EventIn::example()
        }
    }

    #[test]
    fn a_missing_id_and_timestamp_are_filled_in() {
        let now = Utc::now();
        let record = event("acme").into_record(now).unwrap();
        assert_eq!(record.occurred_ms, now.timestamp_millis());
        assert_eq!(record.received_ms, now.timestamp_millis());
        assert!(uuid::Uuid::parse_str(&record.id).is_ok());
    }

    #[test]
    fn a_client_id_and_timestamp_are_kept() {
        let now = Utc::now();
        let at = now - chrono::Duration::days(3);
        let record = EventIn {
            id: Some(EventId("call-42".to_owned())),
            timestamp: Some(at),
            ..event("acme")
        }
        .into_record(now)
        .unwrap();
        assert_eq!(record.id, "call-42");
        assert_eq!(record.occurred_ms, at.timestamp_millis());
    }

    #[test]
    fn every_rule_is_applied() {
        let now = Utc::now();
        let err = event("-acme").into_record(now).unwrap_err();
        assert_eq!(err.field, "tenant");
        let err = EventIn {
            timestamp: Some(now - chrono::Duration::days(36)),
            ..event("acme")
        }
        .into_record(now)
        .unwrap_err();
        assert_eq!(err.field, "timestamp");
        let err = EventIn {
            tokens: Some(11),
            input_tokens: Some(10),
            ..event("acme")
        }
        .into_record(now)
        .unwrap_err();
        assert_eq!(err.field, "tokens");
    }

    #[test]
    fn classes_alone_make_the_tokens() {
        let record = EventIn {
            tokens: None,
            input_tokens: Some(10),
            cache_write_tokens: Some(5),
            ..event("acme")
        }
        .into_record(Utc::now())
        .unwrap();
        assert_eq!(record.tokens, 15);
        assert_eq!(record.cache_write_tokens, Some(5));
    }

    const TAKEN: &[&str] = &[
        r#"{"tenant":"acme","feature":"gpt-4o","tokens":5}"#,
        r#"{"tenant":"acme","feature":"gpt-4o","tokens":1000000000,"inputTokens":999999990,
            "outputTokens":10,"cacheReadTokens":0,"cacheWriteTokens":0,"id":"call 7",
            "timestamp":"2026-12-01T10:00:00.5+02:00"}"#,
        r#"{"tenant":"a","feature":"f","tokens":1,"id":null,"timestamp":null,"inputTokens":null}"#,
        r#"{"tenant":"a","feature":"gpt\u002d4","tokens":5,"id":"call\u002d7"}"#,
        r#"{"tenant":"a","feature":"f","inputTokens":0,"outputTokens":3}"#,
        r#"{"tenant":"a","feature":"f","tokens":5,"reservationId":"a:call 7"}"#,
    ];

    const GIVEN_UP: &[&str] = &[
        r#"{"tenant":"a","feature":"f","tokens":5,"id":""}"#,
        r#"{"tenant":"a","feature":"f","tokens":5,"id":"\u00e9"}"#,
        r#"{"tenant":"a","feature":"f","tokens":5,"extra":{"x":[1,2.5,null]}}"#,
        r#"{"tenant":"a","feature":"f","tokens":5,"events":3}"#,
        r#"{"tenant":"a","tenant":"b","feature":"f","tokens":5}"#,
        r#"{"tenant":"a","feature":"f","tokens":0}"#,
        r#"{"tenant":"a","feature":"f","tokens":1000000001}"#,
        r#"{"tenant":"a","feature":"f","tokens":-1}"#,
        r#"{"tenant":"a","feature":"f","tokens":5.0}"#,
        r#"{"tenant":"a","feature":"f","tokens":1e3}"#,
        r#"{"tenant":"a","feature":"f","tokens":"5"}"#,
        r#"{"tenant":"a","feature":"f","tokens":true}"#,
        r#"{"tenant":"a","feature":"f","tokens":18446744073709551615}"#,
        r#"{"tenant":"a","feature":"f","inputTokens":-1}"#,
        r#"{"tenant":"a","feature":"f","cacheWriteTokens":1000000001}"#,
        r#"{"tenant":5,"feature":"f","tokens":5}"#,
        r#"{"tenant":null,"feature":"f","tokens":5}"#,
        r#"{"feature":"f","tokens":5}"#,
        r#"{"tenant":"-a","feature":"f","tokens":5}"#,
        r#"{"tenant":"","feature":"f","tokens":5}"#,
        r#"{"tenant":"a","feature":"a b","tokens":5}"#,
        r#"{"tenant":"a","tokens":5}"#,
        r#"{"tenant":"a","feature":"f","tokens":5,"id":5}"#,
        r#"{"tenant":"a","feature":"f","tokens":5,"timestamp":"yesterday"}"#,
        r#"{"tenant":"a","feature":"f","tokens":5,"timestamp":1700000000}"#,
        r#"{"tenant":"a","feature":"f","tokens":5,"reservationId":""}"#,
        r#"{"tenant":"a","feature":"f","tokens":5,"reservationId":7}"#,
        r#"[{"tenant":"a","feature":"f","tokens":5}]"#,
        r#"["a","f",5]"#,
        "null",
        "",
        "5",
        r#"{"tenant":"a","feature":"f","tokens":5} x"#,
    ];

    #[test]
    fn the_direct_reading_takes_valid_events_as_the_checked_reading_does() {
        for body in TAKEN {
            assert!(agree::<EventIn>(body), "not taken: {body}");
        }
    }

    #[test]
    fn the_direct_reading_gives_up_on_what_it_cannot_vouch_for() {
        for body in GIVEN_UP {
            assert!(!agree::<EventIn>(body), "taken: {body}");
        }
    }

    #[test]
    fn batches_are_read_alike_both_ways() {
        let event = TAKEN[0];
        let many = |n: usize| format!(r#"{{"events":[{}]}}"#, vec![event; n].join(","));
        for body in [many(1), many(1000)] {
            assert!(agree::<BatchIn>(&body), "not taken: {body}");
        }
        let bad = GIVEN_UP[1];
        for body in [
            many(0),
            many(1001),
            format!(r#"{{"events":[{event}],"x":[1]}}"#),
            format!(r#"{{"events":[{event},{bad}]}}"#),
            format!(r#"{{"events":[{event}],"events":[{event}]}}"#),
            r#"{"events":null}"#.to_owned(),
            "{}".to_owned(),
            format!("[[{event}]]"),
        ] {
            assert!(!agree::<BatchIn>(&body), "taken: {body}");
        }
    }

    /// MessagePack that has no JSON twin is given up on too.
    #[test]
    fn messagepack_json_cannot_hold_is_given_up_on() {
        let event = json!({"tenant": "a", "feature": "f", "tokens": 5});
        let mut valid = rmp_serde::to_vec_named(&event).unwrap();
        assert!(formats_agree::<EventIn>(Format::MsgPack, &valid));
        // One more pair: "x" => bin 8 of one byte.
        let with = |extra: &[u8]| {
            let mut bytes = vec![0x84];
            bytes.extend_from_slice(&valid[1..]);
            bytes.extend_from_slice(extra);
            bytes
        };
        assert!(!formats_agree::<EventIn>(
            Format::MsgPack,
            &with(&[0xa1, b'x', 0xc4, 0x01, 0x00])
        ));
        // A key given twice.
        assert!(!formats_agree::<EventIn>(
            Format::MsgPack,
            &with(&[0xa6, b't', b'o', b'k', b'e', b'n', b's', 0x07])
        ));
        // An integer key.
        assert!(!formats_agree::<EventIn>(
            Format::MsgPack,
            &with(&[0x01, 0x02])
        ));
        // Nested deeper than the limit in an unknown key.
        let mut deep = vec![0xa1, b'x'];
        deep.extend([0x91; 10]);
        deep.push(0x00);
        assert!(!formats_agree::<EventIn>(Format::MsgPack, &with(&deep)));
        // The tenant as a byte string instead of a string.
        let bin_tenant = rmp_serde::to_vec_named(&json!({"feature": "f", "tokens": 5})).unwrap();
        let mut bytes = vec![0x83];
        bytes.extend_from_slice(&bin_tenant[1..]);
        bytes.extend_from_slice(&[0xa6, b't', b'e', b'n', b'a', b'n', b't', 0xc4, 0x01, b'a']);
        assert!(!formats_agree::<EventIn>(Format::MsgPack, &bytes));
        // The event as an array (serde's default for a struct).
        let array = rmp_serde::to_vec(&("a", "f", 5)).unwrap();
        assert!(!formats_agree::<EventIn>(Format::MsgPack, &array));
        // A value after the first.
        valid.push(0xc0);
        assert!(!formats_agree::<EventIn>(Format::MsgPack, &valid));
    }

    /// What the direct reading saves per event, in both formats: a 100-event
    /// batch read both ways (checked and direct), alternately, medians of 15 rounds.
    #[test]
    #[ignore = "a measurement: cargo test -p api --release --lib event_body -- --ignored --nocapture"]
    fn measure_the_direct_reading() {
        use std::time::Instant;
        let event = r#"{"tenant":"acme-corp","feature":"gpt-4o","tokens":1500,"inputTokens":1000,"outputTokens":500,"id":"0193a5c0-7f3a-7000-8000-000000000001"}"#;
        let json = format!(r#"{{"events":[{}]}}"#, vec![event; 100].join(","));
        let value: Value = serde_json::from_str(&json).unwrap();
        let msgpack = rmp_serde::to_vec_named(&value).unwrap();
        let time = |read: &dyn Fn() -> BatchIn| {
            let started = Instant::now();
            for _ in 0..200 {
                assert_eq!(read().events.len(), 100);
            }
            started.elapsed().as_nanos() as f64 / 20_000.0
        };
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (mut rounds, mut cells) = (0, [(); 4].map(|()| Vec::new()));
        while rounds < 15 {
            cells[0].push(time(&|| checked(Format::Json, json.as_bytes()).unwrap()));
            cells[1].push(time(&|| serde_json::from_str(&json).unwrap()));
            cells[2].push(time(&|| checked(Format::MsgPack, &msgpack).unwrap()));
            cells[3].push(time(&|| decode(&msgpack).unwrap()));
            rounds += 1;
        }
        let [json_typed, json_direct, mp_typed, mp_direct] = cells.map(median);
        println!(
            "ns per event: JSON checked {json_typed:.0}, direct {json_direct:.0} ({:.2}x); \
             MessagePack checked {mp_typed:.0}, direct {mp_direct:.0} ({:.2}x)",
            json_typed / json_direct,
            mp_typed / mp_direct
        );
    }
}
