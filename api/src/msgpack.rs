//! Request bodies in JSON or MessagePack: [`JsonOrMsgPack`] reads
//! `application/json`, `application/msgpack` or `application/vnd.msgpack`
//! into the same typed body, so both formats take the same field names and
//! the same rules, and the spec lists both media types. Every route that
//! takes a body takes it this way, read as [`crate::body`] says (and
//! decoded, for MessagePack, within [`crate::body::unpack`]'s bounds).

use std::ops::Deref;

use crate::{
    body::{self, Body, Format},
    error::ApiError,
};
use poem::{FromRequest, Request, RequestBody};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    error::ContentTypeError,
    payload::{Json, Payload},
    registry::{MetaMediaType, MetaRequest, Registry},
};

/// The media type of MessagePack bodies, as the spec lists it.
pub const MSGPACK: &str = "application/msgpack";
/// Its other registered name, accepted as well.
pub const VND_MSGPACK: &str = "application/vnd.msgpack";
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

    #[test]
    fn both_names_of_the_media_type_are_taken() {
        assert!(is_msgpack("application/msgpack"));
        assert!(is_msgpack("application/vnd.msgpack"));
        assert!(is_msgpack("application/msgpack; charset=binary"));
        assert!(!is_msgpack("application/json"));
        assert!(!is_msgpack("text/msgpack"));
    }
}
