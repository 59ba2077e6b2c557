//! Checks a body against its schema, as `/openapi.json` states it, before
//! the typed parse: an unknown field, a missing one, a value of the wrong
//! type or out of range, or not one of an enum's values is refused in
//! plain words naming the field ("must be an integer from 1 to
//! 1000000000", "is required", "must be one of: minute, hour, day").
//!
//! The spec is the rule book, so a rule written once (a `validator` on a
//! field, an enum) is checked and worded here for every route. A string's
//! `pattern` names a domain rule (`routes::rules::domain_rule`), whose own
//! reason is given; other patterns are left to the handler, which names
//! the field. A body that passes this check and still fails the typed
//! parse is refused with the parse's reason.

use chrono::{DateTime, FixedOffset};
use poem_openapi::{registry::Registry, types::Type};
use serde_json::{Map, Value};

use super::{Location, Refusal, Step};

/// A schema and every schema it refers to, as the spec states them.
pub struct Schema {
    root: Value,
    components: Map<String, Value>,
}

impl Schema {
    pub fn new(root: Value, components: Map<String, Value>) -> Self {
        Self { root, components }
    }

    /// The schema of the body type `T`.
    pub fn of<T: Type>() -> Self {
        let mut registry = Registry::new();
        T::register(&mut registry);
        // Provably infallible: the spec itself is this serialization.
        let components = serde_json::to_value(&registry.schemas)
            .ok()
            .and_then(|schemas| schemas.as_object().cloned())
            .unwrap_or_default();
        let root = serde_json::to_value(T::schema_ref()).unwrap_or_default();
        Self { root, components }
    }

    /// Checks `value`; a refusal names where in it the fault is.
    pub fn check(&self, value: &Value) -> Result<(), Refusal> {
        let mut location = Location::default();
        self.check_at(value, &self.root, &mut location)
            .map_err(|reason| Refusal::at(location, reason))
    }

    /// The schema `schema` refers to, or itself.
    fn resolve<'s>(&'s self, schema: &'s Value) -> &'s Value {
        schema["$ref"]
            .as_str()
            .and_then(|path| path.strip_prefix("#/components/schemas/"))
            .and_then(|name| self.components.get(name))
            .unwrap_or(schema)
    }

    /// Checks `value` against `schema`, leaving `location` at the fault.
    fn check_at(
        &self,
        value: &Value,
        schema: &Value,
        location: &mut Location,
    ) -> Result<(), String> {
        let schema = self.resolve(schema);
        if let Some(parts) = schema["allOf"].as_array() {
            for part in parts {
                self.check_at(value, part, location)?;
            }
        }
        if let Some(allowed) = schema["enum"].as_array().filter(|a| !a.is_empty())
            && !allowed.contains(value)
        {
            return Err(format!("must be one of: {}", listed(allowed)));
        }
        match schema["type"].as_str() {
            Some("object") => self.check_object(value, schema, location),
            Some("array") => self.check_array(value, schema, location),
            Some("integer") => check_integer(value, schema),
            Some("number") => value
                .is_number()
                .then_some(())
                .ok_or_else(|| "must be a number".to_owned()),
            Some("boolean") => value
                .is_boolean()
                .then_some(())
                .ok_or_else(|| "must be true or false".to_owned()),
            Some("string") => check_string(value, schema),
            _ => Ok(()),
        }
    }

    fn check_object(
        &self,
        value: &Value,
        schema: &Value,
        location: &mut Location,
    ) -> Result<(), String> {
        let Some(object) = value.as_object() else {
            return Err("must be an object".to_owned());
        };
        let empty = Map::new();
        let properties = schema["properties"].as_object().unwrap_or(&empty);
        let open = schema.get("additionalProperties").is_some();
        for (key, item) in object {
            location.0.push(Step::Key(key.clone()));
            match properties.get(key) {
                // A null is an absent optional field, as the typed parse
                // reads it; a required one is refused below.
                Some(_) if item.is_null() => {}
                Some(property) => self.check_at(item, property, location)?,
                None if open => {}
                None => {
                    let known: Vec<&str> = properties.keys().map(String::as_str).collect();
                    return Err(format!(
                        "is not a field of this body (its fields: {})",
                        known.join(", ")
                    ));
                }
            }
            location.0.pop();
        }
        for required in schema["required"].as_array().into_iter().flatten() {
            let Some(name) = required.as_str() else {
                continue;
            };
            if object.get(name).is_none_or(Value::is_null) {
                location.0.push(Step::Key(name.to_owned()));
                return Err("is required".to_owned());
            }
        }
        Ok(())
    }

    fn check_array(
        &self,
        value: &Value,
        schema: &Value,
        location: &mut Location,
    ) -> Result<(), String> {
        let Some(items) = value.as_array() else {
            return Err("must be a list".to_owned());
        };
        let (min, max) = (schema["minItems"].as_u64(), schema["maxItems"].as_u64());
        let len = items.len() as u64;
        if min.is_some_and(|min| len < min) || max.is_some_and(|max| len > max) {
            return Err(match (min, max) {
                (Some(min), Some(max)) => format!("must hold from {min} to {max} items"),
                (Some(min), None) => format!("must hold at least {min} items"),
                (None, _) => format!("must hold at most {} items", max.unwrap_or_default()),
            });
        }
        if schema["uniqueItems"] == Value::Bool(true) {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    location.0.push(Step::Index(i));
                    return Err("repeats an earlier item".to_owned());
                }
            }
        }
        for (i, item) in items.iter().enumerate() {
            location.0.push(Step::Index(i));
            self.check_at(item, &schema["items"], location)?;
            location.0.pop();
        }
        Ok(())
    }
}

/// The values of an enum, for a reason: `minute, hour, day`.
fn listed(values: &[Value]) -> String {
    let words: Vec<String> = values
        .iter()
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        .collect();
    words.join(", ")
}

/// The range an integer's `format` allows.
fn format_range(format: Option<&str>) -> (i128, i128) {
    match format {
        Some("int8") => (i8::MIN.into(), i8::MAX.into()),
        Some("int16") => (i16::MIN.into(), i16::MAX.into()),
        Some("int32") => (i32::MIN.into(), i32::MAX.into()),
        Some("uint8") => (0, u8::MAX.into()),
        Some("uint16") => (0, u16::MAX.into()),
        Some("uint32") => (0, u32::MAX.into()),
        Some("uint64") => (0, u64::MAX.into()),
        _ => (i64::MIN.into(), i64::MAX.into()),
    }
}

/// An integer within the schema's bounds and its format's range.
fn check_integer(value: &Value, schema: &Value) -> Result<(), String> {
    let (mut min, mut max) = format_range(schema["format"].as_str());
    if let Some(minimum) = schema["minimum"].as_f64() {
        let exclusive = schema["exclusiveMinimum"] == Value::Bool(true);
        min = min.max(minimum.ceil() as i128 + i128::from(exclusive));
    }
    if let Some(maximum) = schema["maximum"].as_f64() {
        let exclusive = schema["exclusiveMaximum"] == Value::Bool(true);
        max = max.min(maximum.floor() as i128 - i128::from(exclusive));
    }
    let number = value
        .as_i64()
        .map(i128::from)
        .or_else(|| value.as_u64().map(i128::from));
    if number.is_some_and(|n| (min..=max).contains(&n)) {
        return Ok(());
    }
    let (lowest, highest) = format_range(None);
    Err(match (min > lowest, max < highest) {
        (false, false) => "must be an integer".to_owned(),
        (true, false) => format!("must be an integer of at least {min}"),
        (false, true) => format!("must be an integer of at most {max}"),
        (true, true) => format!("must be an integer from {min} to {max}"),
    })
}

/// A string of the schema's length, format and domain rule.
fn check_string(value: &Value, schema: &Value) -> Result<(), String> {
    let Some(text) = value.as_str() else {
        return Err(match schema["format"].as_str() {
            Some("date-time") => "must be an RFC 3339 time as a string, e.g. 2026-12-07T10:00:00Z",
            _ => "must be a string",
        }
        .to_owned());
    };
    let chars = text.chars().count() as u64;
    let (min, max) = (schema["minLength"].as_u64(), schema["maxLength"].as_u64());
    if min.is_some_and(|min| chars < min) || max.is_some_and(|max| chars > max) {
        return Err(match (min, max) {
            (Some(min), Some(max)) => format!("must be {min} to {max} characters long"),
            (Some(min), None) => format!("must be at least {min} characters long"),
            (None, _) => format!(
                "must be at most {} characters long",
                max.unwrap_or_default()
            ),
        });
    }
    match schema["format"].as_str() {
        Some("date-time") if text.parse::<DateTime<FixedOffset>>().is_err() => {
            return Err("must be an RFC 3339 time, e.g. 2026-12-07T10:00:00Z".to_owned());
        }
        Some("uuid") if uuid::Uuid::parse_str(text).is_err() => {
            return Err("must be a UUID".to_owned());
        }
        _ => {}
    }
    let rule = schema["pattern"]
        .as_str()
        .and_then(crate::routes::rules::domain_rule);
    match rule {
        Some(rule) => rule(text).map_err(|invalid| invalid.reason),
        None => Ok(()),
    }
}

/// States in `spec` what the check enforces: every object a request body
/// holds takes no field beyond its `properties` (`additionalProperties:
/// false`, which poem-openapi cannot write).
pub fn close_request_bodies(spec: &mut Value) {
    let mut names = Vec::new();
    for operation in spec["paths"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
    {
        for operation in operation.as_object().into_iter().flat_map(|o| o.values()) {
            let content = operation["requestBody"]["content"].as_object();
            for media in content.into_iter().flat_map(|c| c.values()) {
                referred(&media["schema"], &mut names);
            }
        }
    }
    let Some(schemas) = spec["components"]["schemas"].as_object_mut() else {
        return;
    };
    let mut closed = 0;
    while closed < names.len() {
        let name = names[closed].clone();
        closed += 1;
        let Some(schema) = schemas.get_mut(&name) else {
            continue;
        };
        referred(schema, &mut names);
        if schema["type"] == "object" && schema.get("additionalProperties").is_none() {
            schema["additionalProperties"] = Value::Bool(false);
        }
    }
}

/// Adds the names of the component schemas `schema` refers to, at any
/// depth, to `names` (once each).
fn referred(schema: &Value, names: &mut Vec<String>) {
    match schema {
        Value::Object(fields) => {
            let name = fields
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|path| path.strip_prefix("#/components/schemas/"));
            if let Some(name) = name.filter(|name| !names.iter().any(|n| n == name)) {
                names.push(name.to_owned());
            }
            fields.values().for_each(|value| referred(value, names));
        }
        Value::Array(items) => items.iter().for_each(|item| referred(item, names)),
        _ => {}
    }
}
