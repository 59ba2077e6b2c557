//! The OTLP trace messages `POST /v1/traces` reads and answers, declared by
//! hand after `opentelemetry/proto/collector/trace/v1/trace_service.proto`
//! and `trace/v1/trace.proto`: only the fields a usage event is made of.
//! Protobuf decoding skips every other field; so does the JSON reading,
//! which follows OTLP/JSON (lowerCamelCase names, the proto names also
//! taken; trace and span ids as hex; 64-bit integers as strings or
//! numbers).

use std::fmt;

use serde::{
    Deserialize, Deserializer,
    de::{self, MapAccess, Visitor},
};

/// `ExportTraceServiceRequest`: what an exporter sends.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    #[serde(default, alias = "resource_spans")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// The spans of one resource (one process, one service).
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    #[serde(default)]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    #[serde(default, alias = "scope_spans")]
    pub scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    #[serde(default)]
    pub attributes: Vec<KeyValue>,
}

/// The spans of one instrumentation scope.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
pub struct ScopeSpans {
    #[prost(message, repeated, tag = "2")]
    #[serde(default)]
    pub spans: Vec<Span>,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    /// 16 bytes (32 hex digits in JSON).
    #[prost(bytes = "vec", tag = "1")]
    #[serde(default, alias = "trace_id", deserialize_with = "hex_id")]
    pub trace_id: Vec<u8>,
    /// 8 bytes (16 hex digits in JSON).
    #[prost(bytes = "vec", tag = "2")]
    #[serde(default, alias = "span_id", deserialize_with = "hex_id")]
    pub span_id: Vec<u8>,
    #[prost(fixed64, tag = "8")]
    #[serde(
        default,
        alias = "end_time_unix_nano",
        deserialize_with = "integer_or_string"
    )]
    pub end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    #[serde(default)]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    #[serde(default)]
    pub value: Option<AnyValue>,
}

impl KeyValue {
    pub fn new(key: &str, value: Value) -> Self {
        Self {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
        }
    }
}

/// An attribute's value. Arrays, maps and bytes are not usage, so they
/// are not declared: protobuf decoding skips them as unknown fields, and
/// the JSON reading leaves `value` empty for them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    #[prost(oneof = "Value", tags = "1, 2, 3, 4")]
    pub value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(int64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Double(f64),
}

/// `ExportTraceServiceResponse`: `partial_success` is set only when some
/// spans were rejected.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportTracePartialSuccess>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTracePartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_spans: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

impl ExportTraceServiceResponse {
    /// The OTLP/JSON form: `{}`, or `partialSuccess` with `rejectedSpans`
    /// as a string (the protobuf JSON mapping of an int64).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.partial_success {
            None => serde_json::json!({}),
            Some(partial) => serde_json::json!({
                "partialSuccess": {
                    "rejectedSpans": partial.rejected_spans.to_string(),
                    "errorMessage": partial.error_message,
                }
            }),
        }
    }
}

/// Lower-case hex of an id, as OTLP/JSON and trace viewers show it.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes.iter().fold(String::new(), |mut text, byte| {
        // Writing to a String cannot fail.
        let _ = write!(text, "{byte:02x}");
        text
    })
}

/// A trace or span id: hex digits (either case), an even number of them.
fn hex_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(deserializer)?;
    let digit = |b: u8| {
        (b as char)
            .to_digit(16)
            .ok_or_else(|| de::Error::custom(format!("id `{text}` is not hex")))
    };
    if text.len() % 2 != 0 {
        return Err(de::Error::custom(format!(
            "id `{text}` has an odd number of hex digits"
        )));
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| Ok((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
        .collect()
}

/// A 64-bit integer as a JSON number or a decimal string (OTLP/JSON
/// receivers take both).
fn integer_or_string<'de, D: Deserializer<'de>, T>(deserializer: D) -> Result<T, D::Error>
where
    T: TryFrom<i128> + std::str::FromStr,
{
    struct IntVisitor<T>(std::marker::PhantomData<T>);
    impl<T: TryFrom<i128> + std::str::FromStr> Visitor<'_> for IntVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer, as a number or a decimal string")
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            T::try_from(i128::from(v)).map_err(|_| E::custom(format!("{v} is out of range")))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            T::try_from(i128::from(v)).map_err(|_| E::custom(format!("{v} is out of range")))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.parse()
                .map_err(|_| E::custom(format!("`{v}` is not an integer in range")))
        }
    }
    deserializer.deserialize_any(IntVisitor(std::marker::PhantomData))
}

/// `{"stringValue": ...}`, `{"intValue": ...}` and so on; a value of
/// another kind (array, map, bytes) is read as empty.
impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AnyVisitor;
        impl<'de> Visitor<'de> for AnyVisitor {
            type Value = AnyValue;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an OTLP AnyValue object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
                let mut value = None;
                while let Some(key) = map.next_key::<String>()? {
                    let read = match key.as_str() {
                        "stringValue" | "string_value" => Value::String(map.next_value()?),
                        "boolValue" | "bool_value" => Value::Bool(map.next_value()?),
                        "intValue" | "int_value" => Value::Int(map.next_value::<Int>()?.0),
                        "doubleValue" | "double_value" => Value::Double(map.next_value()?),
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    if value.replace(read).is_some() {
                        return Err(de::Error::custom("an AnyValue holds one value"));
                    }
                }
                Ok(AnyValue { value })
            }
        }
        deserializer.deserialize_map(AnyVisitor)
    }
}

/// An `intValue`: a number or a decimal string.
struct Int(i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        integer_or_string(deserializer).map(Int)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn span_with(attributes: Vec<KeyValue>) -> Span {
        Span {
            trace_id: vec![0xab; 16],
            span_id: vec![0x01; 8],
            end_time_unix_nano: 1_700_000_000_123_456_789,
            attributes,
        }
    }

    fn request(span: Span) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: vec![] }),
                scope_spans: vec![ScopeSpans { spans: vec![span] }],
            }],
        }
    }

    #[test]
    fn json_reads_as_its_protobuf_twin() {
        let int = |key: &str, v| KeyValue::new(key, Value::Int(v));
        let text = |key: &str, v: &str| KeyValue::new(key, Value::String(v.into()));
        let expected = request(span_with(vec![
            int("a", 12),
            int("b", 13),
            text("c", "x"),
            KeyValue {
                key: "d".into(),
                value: Some(AnyValue { value: None }),
            },
        ]));
        let json = r#"{"resourceSpans":[{"resource":{"attributes":[]},"scopeSpans":[
            {"scope":{"name":"s"},"spans":[{"traceId":"ABABABABABABABABABABABABABABABAB",
             "span_id":"0101010101010101","name":"chat","kind":3,
             "startTimeUnixNano":"1","endTimeUnixNano":"1700000000123456789",
             "attributes":[{"key":"a","value":{"intValue":"12"}},
                           {"key":"b","value":{"intValue":13}},
                           {"key":"c","value":{"stringValue":"x"}},
                           {"key":"d","value":{"arrayValue":{"values":[{"intValue":1}]}}}],
             "status":{}}]}]}]}"#;
        let read: ExportTraceServiceRequest = serde_json::from_str(json).unwrap();
        assert_eq!(read, expected);
        let bytes = expected.encode_to_vec();
        assert_eq!(
            ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap(),
            expected
        );
    }

    #[test]
    fn bad_ids_and_integers_are_refused() {
        for bad in [
            r#"{"traceId":"abc"}"#,
            r#"{"traceId":"zz"}"#,
            r#"{"endTimeUnixNano":"-1"}"#,
            r#"{"endTimeUnixNano":1.5}"#,
            r#"{"attributes":[{"key":"a","value":{"intValue":"1","stringValue":"x"}}]}"#,
        ] {
            assert!(serde_json::from_str::<Span>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_answer_is_empty_unless_spans_were_rejected() {
        let all = ExportTraceServiceResponse::default();
        assert!(all.encode_to_vec().is_empty());
        assert_eq!(all.to_json(), serde_json::json!({}));
        let partial = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 2,
                error_message: "why".into(),
            }),
        };
        assert_eq!(
            partial.to_json(),
            serde_json::json!({"partialSuccess": {"rejectedSpans": "2", "errorMessage": "why"}})
        );
    }
}
