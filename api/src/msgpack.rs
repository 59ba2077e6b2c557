//! Request bodies in JSON or MessagePack: [`JsonOrMsgPack`] reads
//! `application/json`, `application/msgpack` or `application/vnd.msgpack`
//! into the same typed body, so both formats take the same field names and
//! the same rules, and the spec lists both media types. Every route that
//! takes a body takes it this way, read as [`crate::body`] says.
//!
//! MessagePack decoding is bounded like the stream's records: nesting at
//! most [`MAX_DEPTH`] (a batch is three levels deep), and the size by the
//! body limit that already wraps every body. Trailing bytes after the first
//! value are refused.

use std::{io::Cursor, ops::Deref};

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    error::ContentTypeError,
    payload::{Json, Payload},
    registry::{MetaMediaType, MetaRequest, Registry},
};
use serde::de::DeserializeOwned;

use crate::{
    body::{self, Body, Format},
    error::ApiError,
};

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

/// A MessagePack deserializer of `bytes`, within [`MAX_DEPTH`].
pub fn deserializer(
    bytes: &[u8],
) -> rmp_serde::Deserializer<rmp_serde::decode::ReadReader<Cursor<&[u8]>>> {
    let mut de = rmp_serde::Deserializer::new(Cursor::new(bytes));
    de.set_max_depth(MAX_DEPTH);
    de
}

/// Whether `de` has read all of `bytes`: one value, nothing after it.
pub fn all_read(
    de: &rmp_serde::Deserializer<rmp_serde::decode::ReadReader<Cursor<&[u8]>>>,
    bytes: &[u8],
) -> Result<(), String> {
    let left = bytes.len() as u64 - de.position();
    match left {
        0 => Ok(()),
        left => Err(format!("{left} bytes after the first value")),
    }
}

/// Decodes one MessagePack value (and nothing after it) into `T`, within
/// [`MAX_DEPTH`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut de = deserializer(bytes);
    let value = T::deserialize(&mut de).map_err(|err| format!("invalid MessagePack: {err}"))?;
    all_read(&de, bytes).map_err(|err| format!("invalid MessagePack: {err}"))?;
    Ok(value)
}

impl<'a, T: Body> ApiExtractor<'a> for JsonOrMsgPack<T> {
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
        let format = match request.content_type() {
            Some(content_type) if is_msgpack(content_type) => Format::MsgPack,
            Some(content_type) if <Json<T> as Payload>::check_content_type(content_type) => {
                Format::Json
            }
            Some(content_type) => {
                return Err(ContentTypeError::NotSupported {
                    content_type: content_type.to_owned(),
                }
                .into());
            }
            None => return Err(ContentTypeError::ExpectContentType.into()),
        };
        let bytes = <Vec<u8> as FromRequest>::from_request(request, body).await?;
        body::read(format, &bytes)
            .map(Self)
            .map_err(|refusal| ApiError::from(refusal).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn a_map_decodes_as_its_json_twin() {
        let value = json!({"tenant": "acme", "tokens": 5, "events": [{"id": "a"}]});
        let bytes = rmp_serde::to_vec_named(&value).unwrap();
        assert_eq!(decode::<Value>(&bytes).unwrap(), value);
    }

    #[test]
    fn trailing_bytes_are_refused() {
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
