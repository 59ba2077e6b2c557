//! The OpenAPI document as served at `/openapi.json`, `/docs` and
//! `/reference`: poem-openapi's, with one shape rewritten so that client
//! generators read it.
//!
//! poem-openapi writes a documented field whose type is another schema as
//! `{"allOf": [{"$ref": …}, {"description": …}], "description": …}`.
//! Generators such as openapi-python-client drop what sits behind such a
//! wrapper (a whole route, the `Alert` schema), so an `allOf` of one
//! reference and annotations only becomes that `$ref`, keeping the
//! annotations beside it. All three pages serve the same document.

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
        let mut document: Value =
            serde_json::from_str(&written).expect("poem-openapi writes its spec as JSON");
        unwrap_lone_refs(&mut document);
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

    use super::unwrap_lone_refs;

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
