//! Request bodies, read the same strict way on every route that takes one
//! (through [`crate::msgpack::JsonOrMsgPack`]), JSON or MessagePack:
//!
//! 1. decoded into a JSON value, refusing a key given twice and what JSON
//!    cannot hold (`strict`);
//! 2. checked against the body's schema as the spec states it: unknown
//!    fields, missing ones, types, ranges, enums ([`Schema`]);
//! 3. parsed into the body's type.
//!
//! Every refusal is a 400 whose `details` name the field (and, in a list
//! such as a batch's `events`, the item's `index`) with a reason in plain
//! words. A body type may read valid bodies faster straight from their
//! bytes ([`Body::direct`]), giving up on anything it cannot vouch for,
//! which then takes the three steps above.

mod schema;
mod strict;
pub mod unpack;

pub use schema::{Schema, close_request_bodies};

use poem_openapi::types::{ParseFromJSON, Type};
use serde_json::Value;

use crate::error::{ApiError, ErrorDetails};

/// The encodings a body may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    MsgPack,
}

/// A request body type.
pub trait Body: ParseFromJSON + Type + Send {
    /// The body read straight from its bytes, only when that reading
    /// accepts exactly what the checked reading accepts, with the same
    /// value; `None` (the default) leaves it to the checked reading.
    fn direct(_format: Format, _bytes: &[u8]) -> Option<Self> {
        None
    }
}

/// Reads a body of type `T` from its bytes.
pub fn read<T: Body>(format: Format, bytes: &[u8]) -> Result<T, Refusal> {
    match T::direct(format, bytes) {
        Some(direct) => Ok(direct),
        None => checked(format, bytes),
    }
}

/// The checked reading: the three steps of the module docs.
pub fn checked<T: ParseFromJSON + Type>(format: Format, bytes: &[u8]) -> Result<T, Refusal> {
    let value = decode(format, bytes)?;
    Schema::of::<T>().check(&value)?;
    T::parse_from_json(Some(value))
        .map_err(|err| Refusal::at(Location::default(), err.into_message()))
}

/// Decodes a whole body into a JSON value.
pub fn decode(format: Format, bytes: &[u8]) -> Result<Value, Refusal> {
    if bytes.is_empty() {
        return Err(Refusal::at(Location::default(), "is empty"));
    }
    let syntax = |what: &str, err: &dyn std::fmt::Display| {
        Refusal::at(Location::default(), format!("is not valid {what}: {err}"))
    };
    match format {
        Format::Json => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let value = strict::read(&mut de, |err| syntax("JSON", &err))?;
            de.end().map_err(|err| syntax("JSON", &err))?;
            Ok(value)
        }
        Format::MsgPack => {
            let mut de = unpack::deserializer(bytes);
            let value = strict::read(&mut de, |err| syntax("MessagePack", &err))?;
            unpack::all_read(&de, bytes).map_err(|err| syntax("MessagePack", &err))?;
            Ok(value)
        }
    }
}

/// One step into a body: an object's key or a list's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Where in a body something is: the steps from its root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location(Vec<Step>);

/// A body refused: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    location: Location,
    /// A predicate of what is at the location: `is required`.
    reason: String,
}

impl Refusal {
    pub fn at(location: Location, reason: impl Into<String>) -> Self {
        Self {
            location,
            reason: reason.into(),
        }
    }

    /// Why, as a predicate of what is refused: `is required`.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The `details` of the 400: the field, as a path from the body's root
    /// (`name`, `events[2].tokens` below); inside a list of objects (a
    /// batch's `events`), the item's `index` and the field within it; the
    /// body itself, if no field.
    pub fn details(&self) -> ErrorDetails {
        let steps = self.location.0.as_slice();
        let (index, field) = match steps {
            [Step::Key(_), Step::Index(index), rest @ ..] if !rest.is_empty() => {
                (Some(*index), rest)
            }
            [Step::Key(_), Step::Index(index)] => (Some(*index), &steps[..1]),
            _ => (None, steps),
        };
        let field = path(field);
        let reason = match (&field, index) {
            (None, None) => format!("the body {}", self.reason),
            _ => self.reason.clone(),
        };
        ErrorDetails {
            field,
            index: index.map(|i| i as u32),
            reason,
        }
    }
}

/// `a.b[2].c`, or `None` for no steps.
fn path(steps: &[Step]) -> Option<String> {
    let mut text = String::new();
    for step in steps {
        match step {
            Step::Key(key) if text.is_empty() => text.push_str(key),
            Step::Key(key) => {
                text.push('.');
                text.push_str(key);
            }
            Step::Index(i) => text.push_str(&format!("[{i}]")),
        }
    }
    (!text.is_empty()).then_some(text)
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        ApiError::bad_request("invalid request", refusal.details())
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::Object;

    use super::*;

    /// A body with a bounded integer, an enum-like list and a nested list.
    #[derive(Debug, Object)]
    struct Sample {
        #[oai(validator(minimum(value = "1"), maximum(value = "10")))]
        count: i64,
        #[oai(validator(min_items = 1, max_items = 2))]
        items: Option<Vec<Item>>,
    }

    #[derive(Debug, Object)]
    struct Item {
        name: String,
        at: Option<chrono::DateTime<chrono::Utc>>,
    }

    fn refused_json(text: &str) -> ErrorDetails {
        checked::<Sample>(Format::Json, text.as_bytes())
            .unwrap_err()
            .details()
    }

    fn refused_msgpack(bytes: &[u8]) -> ErrorDetails {
        checked::<Sample>(Format::MsgPack, bytes)
            .unwrap_err()
            .details()
    }

    fn at(field: &str, index: Option<u32>, reason: &str) -> ErrorDetails {
        ErrorDetails {
            index,
            ..ErrorDetails::field(field, reason)
        }
    }

    #[test]
    fn a_key_given_twice_is_named_at_any_depth() {
        assert_eq!(
            refused_json(r#"{"count": 1, "count": 2}"#),
            at("count", None, "is given more than once")
        );
        assert_eq!(
            refused_json(r#"{"count": 1, "items": [{"name": "a"}, {"name": "b", "name": "c"}]}"#),
            at("name", Some(1), "is given more than once")
        );
        // {"count": 1, "count": 1} in MessagePack.
        let twice = [
            0x82, 0xa5, b'c', b'o', b'u', b'n', b't', 0x01, 0xa5, b'c', b'o', b'u', b'n', b't',
            0x01,
        ];
        assert_eq!(
            refused_msgpack(&twice),
            at("count", None, "is given more than once")
        );
    }

    #[test]
    fn the_schema_words_each_refusal_and_names_the_field() {
        let cases = [
            (
                r#"{"count": 0}"#,
                at("count", None, "must be an integer from 1 to 10"),
            ),
            (
                r#"{"count": 1.5}"#,
                at("count", None, "must be an integer from 1 to 10"),
            ),
            (
                r#"{"count": "5"}"#,
                at("count", None, "must be an integer from 1 to 10"),
            ),
            (r#"{}"#, at("count", None, "is required")),
            (r#"{"count": null}"#, at("count", None, "is required")),
            (
                r#"{"count": 1, "items": []}"#,
                at("items", None, "must hold from 1 to 2 items"),
            ),
            (
                r#"{"count": 1, "items": [5]}"#,
                at("items", Some(0), "must be an object"),
            ),
            (
                r#"{"count": 1, "items": [{}]}"#,
                at("name", Some(0), "is required"),
            ),
            (
                r#"{"count": 1, "items": [{"name": "a", "at": "noon"}]}"#,
                at(
                    "at",
                    Some(0),
                    "must be an RFC 3339 time, e.g. 2026-12-07T10:00:00Z",
                ),
            ),
            (
                r#"{"count": 1, "cuont": 2}"#,
                at(
                    "cuont",
                    None,
                    "is not a field of this body (its fields: count, items)",
                ),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(refused_json(body), expected, "{body}");
        }
        let sample = checked::<Sample>(Format::Json, br#"{"count": 3, "items": null}"#).unwrap();
        assert_eq!((sample.count, sample.items.is_none()), (3, true));
    }

    #[test]
    fn a_body_that_is_not_one_is_refused_as_a_whole() {
        let whole = |text: &str| refused_json(text).reason;
        assert_eq!(whole("[1]"), "the body must be an object");
        assert_eq!(whole(""), "the body is empty");
        assert!(
            whole("{").starts_with("the body is not valid JSON: "),
            "{}",
            whole("{")
        );
        assert!(whole("{} x").starts_with("the body is not valid JSON: "));
    }

    #[test]
    fn messagepack_json_cannot_hold_is_named() {
        let reason = |bytes: &[u8]| refused_msgpack(bytes);
        // {"count": bin 8 of one byte}
        let binary = [0x81, 0xa5, b'c', b'o', b'u', b'n', b't', 0xc4, 0x01, 0x00];
        assert_eq!(reason(&binary).field.as_deref(), Some("count"));
        // {"count": timestamp 32 (ext -1)}
        let timestamp = [
            0x81, 0xa5, b'c', b'o', b'u', b'n', b't', 0xd6, 0xff, 0, 0, 0, 1,
        ];
        let refused = reason(&timestamp);
        assert_eq!(refused.field.as_deref(), Some("count"));
        assert!(refused.reason.contains("RFC 3339"), "{refused:?}");
        // {1: 2}: an integer key.
        assert_eq!(
            reason(&[0x81, 0x01, 0x02]).reason,
            "the body has a key that is not a string"
        );
        // Two values where one belongs.
        assert!(
            reason(&[0x80, 0x02])
                .reason
                .starts_with("the body is not valid MessagePack")
        );
    }
}
