//! `POST /v1/traces`: OTLP/HTTP trace export, so that an OpenTelemetry
//! SDK or Collector can send its GenAI spans straight to FlagMeter. Each
//! span with token usage becomes a usage event (`crate::otlp::spans`);
//! the events of one export go to the stream in one append, as a batch's
//! do, and count exactly once however often the exporter retries (their
//! ids come from the spans).
//!
//! Bodies are protobuf (`application/x-protobuf`) or OTLP/JSON
//! (`application/json`), optionally `Content-Encoding: gzip`; the
//! decompressed body is bounded by `FLAGMETER_MAX_BODY_BYTES` like any
//! other. The answer is an `ExportTraceServiceResponse` in the request's
//! encoding: empty when every span with usage was accepted, else
//! `partial_success` with the number rejected and why. Refusals of the
//! whole export (no key, a key without the ingest scope, a body that does
//! not decode, the stream unavailable) are the api's usual JSON errors,
//! with the statuses OTLP exporters act on: they retry a 429 or 503 after
//! `Retry-After`, and drop the export on any other 4xx.

use std::io::Read;

use poem::{FromRequest, IntoResponse, Request, RequestBody, Response, http::header};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, OpenApi,
    registry::{
        MetaMediaType, MetaRequest, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef,
        Registry,
    },
};
use prost::Message;

use super::ApiTags;
use crate::{
    auth::{ApiKey, Scope},
    error::{ApiError, BodyError, BodyRefused, ErrorBody},
    ingest,
    otlp::{
        proto::{ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse},
        spans::{self, SpanContext, SpanOutcome},
    },
    state::AppState,
};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";
/// Rejection reasons quoted in `partial_success.error_message`; the rest
/// are counted.
const REASONS_QUOTED: usize = 5;

/// How an export is encoded; its answer is encoded alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn of(content_type: &str) -> Option<Self> {
        let mime = content_type.parse::<mime::Mime>().ok()?;
        match (mime.type_().as_str(), mime.subtype().as_str()) {
            ("application", "x-protobuf" | "protobuf") => Some(Self::Protobuf),
            ("application", "json") => Some(Self::Json),
            _ => None,
        }
    }
}

/// An export as sent, decoded.
pub struct TraceExport {
    encoding: Encoding,
    request: ExportTraceServiceRequest,
}

/// A refusal of the body, as the JSON error the api answers.
fn refused(err: ApiError) -> poem::Error {
    poem::Error::from_response(err.into_response())
}

fn unsupported(what: &str, value: &str) -> poem::Error {
    let body = ErrorBody::new(
        format!("unsupported {what}"),
        Some(serde_json::json!(format!(
            "`{value}`: OTLP/HTTP takes {PROTOBUF} or {JSON}, gzip or uncompressed"
        ))),
    );
    poem::Error::from_response(BodyRefused::UnsupportedMediaType(body).into_response())
}

/// `body` inflated, at most `limit` bytes of it.
fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, poem::Error> {
    let mut inflated = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|err| {
            refused(ApiError::bad_request(
                "invalid gzip body",
                serde_json::json!({ "reason": err.to_string() }),
            ))
        })?;
    if inflated.len() > limit {
        let body = ErrorBody::new(
            "request body too large",
            Some(serde_json::json!(format!(
                "the decompressed body exceeds {limit} bytes"
            ))),
        );
        return Err(poem::Error::from_response(
            BodyRefused::TooLarge(body).into_response(),
        ));
    }
    Ok(inflated)
}

impl TraceExport {
    /// Decodes `bytes` (already inflated) as `encoding`.
    fn decode(encoding: Encoding, bytes: &[u8]) -> Result<Self, poem::Error> {
        let request = match encoding {
            Encoding::Protobuf => {
                ExportTraceServiceRequest::decode(bytes).map_err(|err| err.to_string())
            }
            // An object, as the schema says: serde's derived struct reading
            // would also take an array of its fields in order.
            Encoding::Json if !bytes.trim_ascii_start().starts_with(b"{") => {
                Err("the body must be a JSON object (an ExportTraceServiceRequest)".to_owned())
            }
            Encoding::Json => serde_json::from_slice(bytes).map_err(|err| err.to_string()),
        }
        .map_err(|reason| {
            refused(ApiError::bad_request(
                "invalid OTLP export",
                serde_json::json!({ "reason": reason }),
            ))
        })?;
        Ok(Self { encoding, request })
    }
}

/// The two encodings as the spec lists them: protobuf as binary, and
/// OTLP/JSON as an object the spec describes as `json`.
fn media_types(json: &'static str) -> Vec<MetaMediaType> {
    let binary = MetaSchema::new_with_format("string", "binary");
    let object = MetaSchema {
        description: Some(json),
        ..MetaSchema::new("object")
    };
    vec![
        MetaMediaType {
            content_type: PROTOBUF,
            schema: MetaSchemaRef::Inline(Box::new(binary)),
        },
        MetaMediaType {
            content_type: JSON,
            schema: MetaSchemaRef::Inline(Box::new(object)),
        },
    ]
}

impl<'a> ApiExtractor<'a> for TraceExport {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(_registry: &mut Registry) {}

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: Some(
                "An OTLP `ExportTraceServiceRequest`, as protobuf or OTLP/JSON, \
                 optionally `Content-Encoding: gzip`.",
            ),
            content: media_types("An ExportTraceServiceRequest in OTLP/JSON."),
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        let content_type = request.content_type().unwrap_or_default();
        let encoding =
            Encoding::of(content_type).ok_or_else(|| unsupported("content type", content_type))?;
        let bytes = <Vec<u8> as FromRequest>::from_request(request, body).await?;
        let BodyLimit(limit) = *request
            .data::<BodyLimit>()
            .expect("routes::app installs the body limit");
        let content_encoding = request
            .headers()
            .get(header::CONTENT_ENCODING)
            .map(|value| value.to_str().unwrap_or("?").trim().to_ascii_lowercase());
        match content_encoding.as_deref() {
            None | Some("identity") => Self::decode(encoding, &bytes),
            Some("gzip" | "x-gzip") => Self::decode(encoding, &gunzip(&bytes, limit)?),
            Some(other) => Err(unsupported("content encoding", other)),
        }
    }
}

/// `FLAGMETER_MAX_BODY_BYTES`, for bounding a body once inflated.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// An `ExportTraceServiceResponse` in the export's encoding.
pub struct ExportAnswer {
    encoding: Encoding,
    response: ExportTraceServiceResponse,
}

impl IntoResponse for ExportAnswer {
    fn into_response(self) -> Response {
        match self.encoding {
            Encoding::Protobuf => Response::builder()
                .content_type(PROTOBUF)
                .body(self.response.encode_to_vec()),
            Encoding::Json => poem::web::Json(self.response.to_json()).into_response(),
        }
    }
}

impl ApiResponse for ExportAnswer {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The export was taken: every span with usage is durably in the \
                              stream, except those `partialSuccess` counts as rejected and \
                              explains. In the export's encoding.",
                status: Some(200),
                status_range: None,
                content: media_types(
                    "An ExportTraceServiceResponse in OTLP/JSON: `{}`, or \
                     `{\"partialSuccess\": {\"rejectedSpans\": \"2\", \"errorMessage\": \"...\"}}`.",
                ),
                headers: vec![],
            }],
        }
    }

    fn register(_registry: &mut Registry) {}
}

/// The partial success of an export whose spans were rejected for
/// `reasons`.
fn partial_success(reasons: &[String]) -> Option<ExportTracePartialSuccess> {
    if reasons.is_empty() {
        return None;
    }
    let mut message = reasons[..reasons.len().min(REASONS_QUOTED)].join("; ");
    if reasons.len() > REASONS_QUOTED {
        message.push_str(&format!("; and {} more", reasons.len() - REASONS_QUOTED));
    }
    Some(ExportTracePartialSuccess {
        rejected_spans: reasons.len() as i64,
        error_message: message,
    })
}

/// The route below, over the shared state.
pub struct OtlpApi(pub AppState);

#[OpenApi(tag = "ApiTags::Events")]
impl OtlpApi {
    /// Export OpenTelemetry traces (OTLP/HTTP): each GenAI span with token
    /// usage is recorded as a usage event.
    ///
    /// See the "OpenTelemetry" section of docs/api.md for how span attributes
    /// become events. A span for a tenant the key may not ingest for is
    /// rejected like an invalid one.
    #[oai(path = "/v1/traces", method = "post", operation_id = "exportTraces")]
    async fn export(&self, auth: ApiKey, body: TraceExport) -> Result<ExportAnswer, BodyError> {
        let caller = &auth.0;
        caller.require(Scope::Ingest)?;
        // The one clock of every replica (`crate::clock`), as the other
        // ingest routes stamp events.
        let now = self.0.clock.now();
        let (mut records, mut reasons, mut skipped) = (Vec::new(), Vec::new(), 0u64);
        for resource_spans in &body.request.resource_spans {
            let context = SpanContext {
                resource: resource_spans
                    .resource
                    .as_ref()
                    .map_or(&[], |r| r.attributes.as_slice()),
                tenant_attribute: &self.0.otlp_tenant_attribute,
                now,
            };
            let all_spans = resource_spans.scope_spans.iter().flat_map(|s| &s.spans);
            for span in all_spans {
                match spans::outcome(span, &context) {
                    SpanOutcome::Skipped => skipped += 1,
                    SpanOutcome::Rejected(reason) => reasons.push(reason),
                    SpanOutcome::Event(record) => {
                        match caller.require_for(Scope::Ingest, &record.tenant) {
                            Ok(()) => records.push(record),
                            Err(_) => reasons.push(format!(
                                "span {}/{}: the key may not ingest for tenant `{}`",
                                crate::otlp::proto::hex(&span.trace_id),
                                crate::otlp::proto::hex(&span.span_id),
                                record.tenant
                            )),
                        }
                    }
                }
            }
        }
        if !records.is_empty() {
            self.0.auth.charge_batch(caller, records.len())?;
            ingest::append(&self.0, &records).await?;
        }
        for (outcome, n) in [
            ("accepted", records.len() as u64),
            ("skipped", skipped),
            ("rejected", reasons.len() as u64),
        ] {
            metrics::counter!("flagmeter_otlp_spans_total", "outcome" => outcome).increment(n);
        }
        Ok(ExportAnswer {
            encoding: body.encoding,
            response: ExportTraceServiceResponse {
                partial_success: partial_success(&reasons),
            },
        })
    }
}
