//! Reads a body into a JSON value, refusing what a reader could take two
//! ways: a key given twice in one object (`{"tokens": 1, "tokens":
//! 999999999}`: a proxy or an audit log may read the first, a JSON library
//! the last), and, in MessagePack, values JSON cannot hold (binary,
//! extension types such as timestamps, keys that are not strings, NaN).
//! Each refusal says where in the body it is.

use std::{cell::RefCell, fmt};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::{Location, Refusal, Step};

/// Reads a whole value with `deserializer`; a refusal of the value itself
/// names where it is, any other failure is `syntax`'s wording of the
/// deserializer's error.
pub fn read<'de, D: Deserializer<'de>>(
    deserializer: D,
    syntax: impl FnOnce(D::Error) -> Refusal,
) -> Result<Value, Refusal> {
    let trail = RefCell::new(Trail::default());
    Strict(&trail).deserialize(deserializer).map_err(|err| {
        let trail = trail.into_inner();
        match trail.refused {
            Some(reason) => Refusal::at(trail.location, reason),
            None => syntax(err),
        }
    })
}

/// Where the reading is (the location of a refusal, once one is made: it
/// is not unwound), and the refusal's reason.
#[derive(Default)]
struct Trail {
    location: Location,
    refused: Option<String>,
}

/// A value and everything in it, read strictly.
#[derive(Clone, Copy)]
struct Strict<'t>(&'t RefCell<Trail>);

impl Strict<'_> {
    fn refuse<E: de::Error>(self, reason: impl Into<String>) -> E {
        let reason = reason.into();
        let error = E::custom(&reason);
        self.0.borrow_mut().refused = Some(reason);
        error
    }

    /// Reads the value at `step`, which is left on the trail if it fails.
    fn descend<T, E>(self, step: Step, read: impl FnOnce(Self) -> Result<T, E>) -> Result<T, E> {
        self.0.borrow_mut().location.0.push(step);
        let value = read(self)?;
        self.0.borrow_mut().location.0.pop();
        Ok(value)
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| self.refuse("must be a finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Value, E> {
        Err(self.refuse("is MessagePack binary, which JSON cannot hold: send text as a string"))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    /// How rmp-serde hands over an extension type (a timestamp, say).
    fn visit_newtype_struct<D: Deserializer<'de>>(self, _: D) -> Result<Value, D::Error> {
        Err(self.refuse(
            "is a MessagePack extension (such as a timestamp), which JSON cannot hold: \
             send times as RFC 3339 strings",
        ))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = self.descend(Step::Index(items.len()), |strict| {
            seq.next_element_seed(strict)
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key_seed(Key(self))? {
            if object.contains_key(&key) {
                self.0.borrow_mut().location.0.push(Step::Key(key));
                return Err(self.refuse("is given more than once"));
            }
            let value =
                self.descend(Step::Key(key.clone()), |strict| map.next_value_seed(strict))?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// An object's key: a string, and only a string.
struct Key<'t>(Strict<'t>);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<String, E> {
        Err(self.0.refuse("has a key that is not a string"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<String, E> {
        Err(self.0.refuse("has a key that is not a string"))
    }
}
