//! The spec's operations, indexed by path, for the answers the framework
//! gives before any handler runs: the `Allow` header every 405 must carry
//! (RFC 9110), and a refused path or query parameter named, with a reason
//! in plain words ("must be one of: minute, hour, day"). poem-openapi
//! reports only the parameter's name and its own wording; the reason here
//! is the parameter's value checked against its schema as the spec states
//! it ([`crate::body::Schema`], the checker of request bodies).

use std::{collections::HashMap, sync::Arc};

use poem::{
    Endpoint, IntoResponse, Request, Response,
    http::{HeaderValue, Method, StatusCode, Uri, header},
};
use poem_openapi::error::{ParseParamError, ParsePathError};
use serde_json::{Map, Value};

use crate::{
    body::Schema,
    error::{ApiError, ErrorDetails, json_errors},
};

/// A segment of a path of the spec.
#[derive(Debug, PartialEq)]
enum Segment {
    Literal(String),
    /// `{name}`.
    Parameter(String),
}

/// One path of the spec.
struct PathEntry {
    segments: Vec<Segment>,
    /// Its `Allow` value.
    allow: HeaderValue,
    /// Per method, the schema of each parameter, by name.
    parameters: HashMap<Method, HashMap<String, Value>>,
}

impl PathEntry {
    /// The name of a path parameter poem-openapi reports by position
    /// (`param0` is the first).
    fn path_parameter(&self, reported: &str) -> Option<&str> {
        let position: usize = reported.strip_prefix("param")?.parse().ok()?;
        self.segments
            .iter()
            .filter_map(|segment| match segment {
                Segment::Parameter(name) => Some(name.as_str()),
                Segment::Literal(_) => None,
            })
            .nth(position)
    }
}

/// Every path of the spec, and the schemas its parameters refer to.
pub struct Operations {
    paths: Vec<PathEntry>,
    components: Map<String, Value>,
}

impl Operations {
    /// Routes outside the spec (the dashboard and its assets, the spec,
    /// the docs, the metrics) answer GET only.
    const UNDOCUMENTED: HeaderValue = HeaderValue::from_static("GET, HEAD");

    pub fn from_spec(spec: &str) -> Self {
        let spec: Value = serde_json::from_str(spec).expect("poem-openapi writes its spec as JSON");
        let paths = spec["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(path, operations)| {
                let segments = path
                    .split('/')
                    .map(
                        |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                            Some(name) => Segment::Parameter(name.to_owned()),
                            None => Segment::Literal(s.to_owned()),
                        },
                    )
                    .collect();
                let operations = operations.as_object().into_iter().flatten();
                let mut methods: Vec<String> = operations
                    .clone()
                    .map(|(method, _)| method.to_ascii_uppercase())
                    .collect();
                // poem answers HEAD wherever it answers GET.
                if methods.iter().any(|m| m == "GET") {
                    methods.push("HEAD".to_owned());
                }
                methods.sort();
                let allow = HeaderValue::from_str(&methods.join(", "))
                    .expect("method names are valid header text");
                let parameters = operations
                    .filter_map(|(method, operation)| {
                        let method = method.to_ascii_uppercase().parse().ok()?;
                        let named = operation["parameters"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|p| {
                                Some((p["name"].as_str()?.to_owned(), p["schema"].clone()))
                            })
                            .collect();
                        Some((method, named))
                    })
                    .collect();
                PathEntry {
                    segments,
                    allow,
                    parameters,
                }
            })
            .collect();
        let components = spec["components"]["schemas"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        Self { paths, components }
    }

    /// The path of the spec the router picks for a request path, which
    /// prefers a literal segment to a parameter.
    fn route(&self, path: &str) -> Option<&PathEntry> {
        let segments: Vec<&str> = path.split('/').collect();
        self.paths
            .iter()
            .filter(|entry| {
                entry.segments.len() == segments.len()
                    && entry.segments.iter().zip(&segments).all(|(t, s)| match t {
                        Segment::Literal(t) => t == s,
                        Segment::Parameter(_) => true,
                    })
            })
            .max_by_key(|entry| {
                let literal = |s: &Segment| matches!(s, Segment::Literal(_));
                entry.segments.iter().map(literal).collect::<Vec<_>>()
            })
    }

    /// The `Allow` value for a request path.
    fn allow(&self, path: &str) -> HeaderValue {
        self.route(path)
            .map_or(Self::UNDOCUMENTED, |entry| entry.allow.clone())
    }

    /// The 400 for the parameter `name` of a request, which the framework
    /// refused: why its value breaks its schema.
    fn refused_parameter(&self, method: &Method, uri: &Uri, reported: &str) -> ApiError {
        let entry = self.route(uri.path());
        let name = entry
            .and_then(|entry| entry.path_parameter(reported))
            .unwrap_or(reported);
        let schema = entry
            .and_then(|entry| entry.parameters.get(method)?.get(name))
            .cloned()
            .unwrap_or_default();
        let raw = entry.and_then(|entry| raw_value(entry, uri, name));
        let reason = match raw {
            None => "is required".to_owned(),
            Some(raw) => Schema::new(schema.clone(), self.components.clone())
                .check(&typed(&raw, &schema))
                .err()
                .map_or_else(
                    || "is not valid here".to_owned(),
                    |refusal| refusal.reason().to_owned(),
                ),
        };
        ApiError::bad_request(
            &format!("invalid {name}"),
            ErrorDetails::field(name, reason),
        )
    }
}

/// The value of parameter `name` in a request: its path segment, or its
/// (first) query value, decoded.
fn raw_value(entry: &PathEntry, uri: &Uri, name: &str) -> Option<String> {
    let in_path = entry
        .segments
        .iter()
        .position(|s| matches!(s, Segment::Parameter(p) if p == name));
    match in_path {
        Some(i) => {
            let segment = uri.path().split('/').nth(i)?;
            Some(
                percent_encoding::percent_decode_str(segment)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        }
        None => form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned()),
    }
}

/// A raw parameter as the JSON value its schema describes: a number where
/// a number belongs, if it reads as one; else the text.
fn typed(raw: &str, schema: &Value) -> Value {
    let number = || {
        raw.parse::<i64>()
            .ok()
            .map(Value::from)
            .or_else(|| raw.parse::<u64>().ok().map(Value::from))
    };
    match schema["type"].as_str() {
        Some("integer") => number().unwrap_or_else(|| Value::String(raw.to_owned())),
        Some("boolean") => raw
            .parse::<bool>()
            .map_or_else(|_| Value::String(raw.to_owned()), Value::Bool),
        _ => Value::String(raw.to_owned()),
    }
}

/// Names a parameter the framework refused, and adds `Allow` to a 405 (the
/// router's refusal of a method a path does not answer), in the usual JSON
/// error shape.
pub async fn framework_refusals<E: Endpoint>(
    next: E,
    req: Request,
    operations: Arc<Operations>,
) -> poem::Result<Response> {
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let mut response = match next.call(req).await {
        Ok(response) => response.into_response(),
        Err(err) if err.status() == StatusCode::METHOD_NOT_ALLOWED => json_errors(err).await,
        Err(err) => {
            let parameter = match err.downcast_ref::<ParsePathError>() {
                Some(refused) => Some(refused.name),
                None => err
                    .downcast_ref::<ParseParamError>()
                    .map(|refused| refused.name),
            };
            match parameter {
                Some(name) => operations
                    .refused_parameter(&method, &uri, name)
                    .into_response(),
                None => return Err(err),
            }
        }
    };
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key(header::ALLOW)
    {
        response
            .headers_mut()
            .insert(header::ALLOW, operations.allow(uri.path()));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r##"{"paths": {
        "/api/usage/{tenant}": {"get": {"parameters": [
            {"name": "tenant", "in": "path", "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}}]}},
        "/api/usage/stream": {"get": {}},
        "/api/tenants/{tenant}": {"put": {}, "get": {}, "delete": {}},
        "/api/events": {"post": {}, "get": {"parameters": [
            {"name": "limit", "in": "query", "schema": {"type": "integer", "format": "uint64", "minimum": 1, "maximum": 1000}},
            {"name": "granularity", "in": "query", "schema": {"$ref": "#/components/schemas/G"}}]}}
    }, "components": {"schemas": {"G": {"type": "string", "enum": ["minute", "hour", "day"]}}}}"##;

    #[test]
    fn allow_names_the_methods_of_the_route_the_router_picks() {
        let operations = Operations::from_spec(SPEC);
        let allow = |path| operations.allow(path).to_str().unwrap().to_owned();
        assert_eq!(allow("/api/tenants/acme"), "DELETE, GET, HEAD, PUT");
        assert_eq!(allow("/api/events"), "GET, HEAD, POST");
        assert_eq!(allow("/api/usage/stream"), "GET, HEAD");
        assert_eq!(allow("/metrics"), "GET, HEAD");
    }

    #[test]
    fn a_refused_parameter_is_named_with_its_rule() {
        let operations = Operations::from_spec(SPEC);
        let refused = |uri: &str, name| match operations.refused_parameter(
            &Method::GET,
            &uri.parse().unwrap(),
            name,
        ) {
            ApiError::BadRequest(body) => body.0.details.unwrap(),
            _ => unreachable!(),
        };
        let range = "must be an integer from 1 to 1000";
        let tenant_characters = "may contain only letters, digits, '.', '_' and '-'";
        let cases = [
            ("/api/events?limit=0", "limit", "limit", range),
            ("/api/events?limit=ten", "limit", "limit", range),
            ("/api/events", "limit", "limit", "is required"),
            (
                "/api/events?granularity=week",
                "granularity",
                "granularity",
                "must be one of: minute, hour, day",
            ),
            // poem-openapi names a path parameter by its position.
            (
                "/api/usage/-acme",
                "param0",
                "tenant",
                "must start with a letter or digit",
            ),
            (
                "/api/usage/acme%20corp",
                "param0",
                "tenant",
                tenant_characters,
            ),
        ];
        for (uri, reported, field, reason) in cases {
            assert_eq!(
                refused(uri, reported),
                ErrorDetails::field(field, reason),
                "{uri}"
            );
        }
    }
}
