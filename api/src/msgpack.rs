//! Request bodies in JSON or MessagePack: [`JsonOrMsgPack`] reads
//! `application/json`, `application/msgpack` or `application/vnd.msgpack`
//! into the same typed body, so both formats take the same field names and
//! the same rules, and the spec lists both media types.
//!
//! Either format is first read straight into the body type (its serde
//! [`Deserialize`](serde::Deserialize), which takes only bodies the typed parse takes, with the
//! same values: `routes::event_body`), skipping the JSON value in between.
//! A body that reading gives up on is decoded into a JSON value and parsed
//! exactly as poem-openapi parses a JSON body (`ParseFromJSON`), which words
//! every refusal, so no rule exists twice. MessagePack decoding is bounded
//! like the stream's records: nesting at most
//! [`MAX_DEPTH`] (a batch is three levels deep), and the size by the body
//! limit that already wraps every body. A value JSON cannot hold (binary,
//! extension types, non-string map keys, NaN) is refused with a 400 that
//! names it, as are trailing bytes after the first value.

use std::{io::Cursor, ops::Deref};

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    error::{ContentTypeError, ParseRequestPayloadError},
    payload::{Json, Payload},
    registry::{MetaMediaType, MetaRequest, Registry},
    types::{ParseFromJSON, Type},
};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The media type of MessagePack bodies, as the spec lists it.
pub const MSGPACK: &str = "application/msgpack";
/// Its other registered name, accepted as well.
pub const VND_MSGPACK: &str = "application/vnd.msgpack";
/// Deepest nesting a body may have.
pub const MAX_DEPTH: usize = 8;

/// A body of type `T`, sent as JSON or as MessagePack.
#[derive(Debug)]
pub struct JsonOrMsgPack<T>(pub T);

impl<T> Deref for JsonOrMsgPack<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Whether `content_type` names MessagePack.
fn is_msgpack(content_type: &str) -> bool {
    matches!(content_type.parse::<mime::Mime>(), Ok(mime)
        if mime.type_() == "application" && matches!(mime.subtype().as_str(), "msgpack" | "vnd.msgpack"))
}

/// Decodes one MessagePack value (and nothing after it) into `T` (the body
/// type, or a JSON value), within [`MAX_DEPTH`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut de = rmp_serde::Deserializer::new(Cursor::new(bytes));
    de.set_max_depth(MAX_DEPTH);
    let value = T::deserialize(&mut de).map_err(|err| format!("invalid MessagePack: {err}"))?;
    let read = de.position();
    if read != bytes.len() as u64 {
        return Err(format!(
            "invalid MessagePack: {} bytes after the first value",
            bytes.len() as u64 - read
        ));
    }
    Ok(value)
}

/// The typed parse of a body already decoded into a JSON value, refused as
/// poem-openapi refuses a JSON body.
fn parse<T: ParseFromJSON>(value: Value) -> Result<T, ParseRequestPayloadError> {
    T::parse_from_json(Some(value)).map_err(|err| ParseRequestPayloadError {
        reason: err.into_message(),
    })
}

/// `T`'s [`Deserialize`](serde::Deserialize) must accept only what its `ParseFromJSON` accepts,
/// with the same value (see the module docs).
impl<'a, T: ParseFromJSON + DeserializeOwned + Type + Send> ApiExtractor<'a> for JsonOrMsgPack<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        let media = |content_type| MetaMediaType {
            content_type,
            schema: T::schema_ref(),
        };
        Some(MetaRequest {
            description: None,
            content: vec![
                media(<Json<T> as Payload>::CONTENT_TYPE),
                media(MSGPACK),
                media(VND_MSGPACK),
            ],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        match request.content_type() {
            Some(content_type) if is_msgpack(content_type) => {
                let bytes = <Vec<u8> as FromRequest>::from_request(request, body).await?;
                if let Ok(direct) = decode(&bytes) {
                    return Ok(Self(direct));
                }
                let value = decode::<Value>(&bytes)
                    .map_err(|reason| ParseRequestPayloadError { reason })?;
                Ok(Self(parse(value)?))
            }
            Some(content_type) if <Json<T> as Payload>::check_content_type(content_type) => {
                let bytes = <Vec<u8> as FromRequest>::from_request(request, body).await?;
                if let Ok(direct) = serde_json::from_slice(&bytes) {
                    return Ok(Self(direct));
                }
                // As poem-openapi's `Json<T>` reads it.
                let value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).map_err(|err| ParseRequestPayloadError {
                        reason: err.to_string(),
                    })?
                };
                Ok(Self(parse(value)?))
            }
            Some(content_type) => Err(ContentTypeError::NotSupported {
                content_type: content_type.to_owned(),
            }
            .into()),
            None => Err(ContentTypeError::ExpectContentType.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_map_decodes_as_its_json_twin() {
        let value = json!({"tenant": "acme", "tokens": 5, "events": [{"id": "a"}]});
        let bytes = rmp_serde::to_vec_named(&value).unwrap();
        assert_eq!(decode::<Value>(&bytes).unwrap(), value);
    }

    #[test]
    fn what_json_cannot_hold_is_refused_by_name() {
        // `bin 8` of three bytes.
        let err = decode::<Value>(&[0xc4, 0x03, 1, 2, 3]).unwrap_err();
        assert!(err.starts_with("invalid MessagePack"), "{err}");
        // {1: 2}: a map with an integer key.
        assert!(decode::<Value>(&[0x81, 0x01, 0x02]).is_err());
        // Two values where one belongs.
        let err = decode::<Value>(&[0x01, 0x02]).unwrap_err();
        assert_eq!(err, "invalid MessagePack: 1 bytes after the first value");
        // Truncated: a map announcing one pair, then nothing.
        assert!(decode::<Value>(&[0x81]).is_err());
        assert!(decode::<Value>(&[]).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        // 20 nested one-element arrays around a 0.
        let mut deep = vec![0x91; 20];
        deep.push(0x00);
        assert!(decode::<Value>(&deep).is_err());
        let mut shallow = vec![0x91; 3];
        shallow.push(0x00);
        assert_eq!(decode::<Value>(&shallow).unwrap(), json!([[[0]]]));
    }

    #[test]
    fn both_names_of_the_media_type_are_taken() {
        assert!(is_msgpack("application/msgpack"));
        assert!(is_msgpack("application/vnd.msgpack"));
        assert!(is_msgpack("application/msgpack; charset=binary"));
        assert!(!is_msgpack("application/json"));
        assert!(!is_msgpack("text/msgpack"));
    }
}
