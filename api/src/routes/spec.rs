//! The OpenAPI document as served at `/openapi.json`, `/docs` and
//! `/reference`: poem-openapi's, with one shape rewritten so that client
//! generators read it.
//!
//! poem-openapi writes a documented field whose type is another schema as
//! `{"allOf": [{"$ref": …}, {"description": …}], "description": …}`.
//! Generators such as openapi-python-client drop what sits behind such a
//! wrapper (a whole route, the `Alert` schema), so an `allOf` of one
//! reference and annotations only becomes that `$ref`, keeping the
//! annotations beside it. Request bodies are stated closed
//! (`additionalProperties: false`), as `crate::body` reads them; the
//! document is read strictly, so that a path two route groups documented
//! (and a reader would keep only once) stops the start. All three pages
//! serve the same document.

use poem_openapi::{OpenApi, OpenApiService, Webhook};
use serde_json::Value;

/// The spec as poem-openapi writes it, and as it is served.
pub struct Spec {
    written: String,
    served: String,
}

impl Spec {
    /// Reads `api`'s spec and rewrites it.
    pub fn of<T: OpenApi, W: Webhook>(api: &OpenApiService<T, W>) -> Self {
        let written = api.spec();
        let exact = whole_floats_as_integers(&written);
        let mut document = crate::body::decode(crate::body::Format::Json, exact.as_bytes())
            .expect("poem-openapi writes its spec as JSON, each key once");
        unwrap_lone_refs(&mut document);
        crate::body::close_request_bodies(&mut document);
        let served = serde_json::to_string_pretty(&document).expect("a JSON value serializes");
        Self { written, served }
    }

    /// The document served at `/openapi.json`.
    pub fn json(&self) -> &str {
        &self.served
    }

    /// `page` (an HTML page of poem-openapi's holding the spec it wrote)
    /// holding the served spec instead.
    pub fn embed_in(&self, page: String) -> String {
        assert!(
            page.contains(&self.written),
            "poem-openapi's page embeds its spec as written"
        );
        page.replacen(&self.written, &self.served, 1)
    }
}

/// `text` (JSON) with every whole number written as a float (poem-openapi
/// writes the bounds it keeps as `f64` so: `9007199254740991.0`) written
/// as an integer. serde_json reads such a float a unit off when it has
/// many digits (the offset bound 2^53 − 1 became 2^53 − 2), and an integer
/// exactly.
fn whole_floats_as_integers(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if in_string {
            in_string = escaped || byte != b'"';
            escaped = !escaped && byte == b'\\';
        } else if byte == b'"' {
            in_string = true;
        } else if byte == b'.' && i > 0 && bytes[i - 1].is_ascii_digit() {
            let zeros = bytes[i + 1..].iter().take_while(|b| **b == b'0').count();
            let after = bytes.get(i + 1 + zeros).copied().unwrap_or(b' ');
            if zeros > 0 && !after.is_ascii_digit() && !matches!(after, b'e' | b'E') {
                i += 1 + zeros;
                continue;
            }
        }
        out.push(byte);
        i += 1;
    }
    // Only ASCII bytes outside strings were left out.
    String::from_utf8(out).expect("still UTF-8")
}

/// Keywords that annotate a schema without constraining it.
const ANNOTATIONS: [&str; 6] = [
    "description",
    "default",
    "example",
    "title",
    "readOnly",
    "deprecated",
];

/// Replaces, everywhere in `value`, an object whose `allOf` holds one
/// `$ref` and otherwise annotations only by that reference, with the
/// object's other keywords beside it.
fn unwrap_lone_refs(value: &mut Value) {
    match value {
        Value::Object(object) => match object.get("allOf").and_then(lone_ref) {
            Some(reference) => {
                object.remove("allOf");
                object.insert("$ref".to_owned(), reference);
            }
            None => object.values_mut().for_each(unwrap_lone_refs),
        },
        Value::Array(items) => items.iter_mut().for_each(unwrap_lone_refs),
        _ => {}
    }
}

/// The reference of an `allOf` that holds one and annotations only.
fn lone_ref(all_of: &Value) -> Option<Value> {
    let parts = all_of.as_array()?;
    let (references, others): (Vec<_>, Vec<_>) =
        parts.iter().partition(|part| part.get("$ref").is_some());
    let annotations_only = others.iter().all(|part| {
        part.as_object()
            .is_some_and(|keys| keys.keys().all(|key| ANNOTATIONS.contains(&key.as_str())))
    });
    match references.as_slice() {
        [reference] if annotations_only => reference.get("$ref").cloned(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{unwrap_lone_refs, whole_floats_as_integers};

    #[test]
    fn whole_floats_become_integers_and_nothing_else_changes() {
        let text = r#"{"max": 9007199254740991.0, "min": 1.0, "f": 2.50, "e": 1.0e3,
                       "s": "v1.0 \" 3.0", "é": [0.0, 10.5]}"#;
        assert_eq!(
            whole_floats_as_integers(text),
            r#"{"max": 9007199254740991, "min": 1, "f": 2.50, "e": 1.0e3,
                       "s": "v1.0 \" 3.0", "é": [0, 10.5]}"#
        );
        let read: serde_json::Value =
            serde_json::from_str(&whole_floats_as_integers(text)).unwrap();
        assert_eq!(read["max"], 9_007_199_254_740_991u64);
    }

    #[test]
    fn a_lone_reference_loses_its_wrapper_and_nothing_else_changes() {
        let mut document = json!({
            "a": {"allOf": [{"$ref": "#/A"}, {"description": "x"}], "description": "x"},
            "b": {"allOf": [{"$ref": "#/B"}, {"type": "object"}]},
            "c": [{"allOf": [{"$ref": "#/C"}, {"default": "minute"}], "default": "minute"}],
            "d": {"allOf": [{"$ref": "#/D"}, {"$ref": "#/E"}]},
        });
        unwrap_lone_refs(&mut document);
        assert_eq!(
            document,
            json!({
                "a": {"$ref": "#/A", "description": "x"},
                "b": {"allOf": [{"$ref": "#/B"}, {"type": "object"}]},
                "c": [{"$ref": "#/C", "default": "minute"}],
                "d": {"allOf": [{"$ref": "#/D"}, {"$ref": "#/E"}]},
            })
        );
    }
}
