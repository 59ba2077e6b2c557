//! OpenTelemetry GenAI ingest: the spans of an OTLP trace export that
//! carry token usage become usage events ([`spans`]), read from protobuf
//! or JSON ([`proto`]). The route is `routes::otlp`.

pub mod proto;
pub mod spans;
