//! `POST /v1/traces`: OTLP exports of GenAI spans, in protobuf and JSON,
//! plain and gzipped, counted as usage events through a real pipeline.

use std::{io::Write, time::Duration};

use api::otlp::proto::{
    ExportTraceServiceRequest, ExportTraceServiceResponse, KeyValue, Resource, ResourceSpans,
    ScopeSpans, Span, Value,
};
use chrono::Utc;
use prost::Message;
use serde_json::{Value as Json, json};
use stream::EventRecord;
use testkit::{TestApp, assert_client_error, content_type, create_key, spawn_app};

fn int(key: &str, n: i64) -> KeyValue {
    KeyValue::new(key, Value::Int(n))
}

fn text(key: &str, s: &str) -> KeyValue {
    KeyValue::new(key, Value::String(s.into()))
}

/// A span that ended a second ago, with span id `n`.
fn span(n: u8, attributes: Vec<KeyValue>) -> Span {
    let ended = Utc::now() - chrono::Duration::seconds(1);
    Span {
        trace_id: vec![0x7e; 16],
        span_id: vec![n; 8],
        end_time_unix_nano: ended.timestamp_nanos_opt().unwrap() as u64,
        attributes,
    }
}

/// An export of `spans` from a resource with `resource` attributes.
fn export(resource: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource,
            }),
            scope_spans: vec![ScopeSpans { spans }],
        }],
    }
}

async fn post(
    client: &reqwest::Client,
    app: &TestApp,
    content_type: &str,
    gzip: bool,
    body: Vec<u8>,
) -> reqwest::Response {
    if gzip {
        post_encoded(client, app, content_type, Some("gzip"), gzipped(&body)).await
    } else {
        post_encoded(client, app, content_type, None, body).await
    }
}

/// Posts `body` as it is, saying it is `content_encoding`.
async fn post_encoded(
    client: &reqwest::Client,
    app: &TestApp,
    content_type: &str,
    content_encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = client
        .post(format!("{}/v1/traces", app.base))
        .header("content-type", content_type);
    if let Some(encoding) = content_encoding {
        request = request.header("content-encoding", encoding);
    }
    request.body(body).send().await.expect("request sent")
}

fn gzipped(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).unwrap();
    encoder.finish().unwrap()
}

/// Posts `export` as protobuf; asserts a 200 in protobuf and returns it.
async fn post_protobuf(
    app: &TestApp,
    export: &ExportTraceServiceRequest,
) -> ExportTraceServiceResponse {
    let response = post(
        &app.client,
        app,
        "application/x-protobuf",
        false,
        export.encode_to_vec(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(content_type(&response), "application/x-protobuf");
    ExportTraceServiceResponse::decode(response.bytes().await.unwrap()).unwrap()
}

/// The records in the stream, by id.
async fn records(app: &TestApp) -> Vec<EventRecord> {
    let mut records = app.env.records().await;
    records.sort_by(|a, b| a.id.cmp(&b.id));
    records
}

#[tokio::test]
async fn genai_spans_in_protobuf_are_counted_exactly_once_with_cached_tokens_apart() {
    let app = spawn_app().await;
    let _worker = app.env.spawn_pipeline("worker");
    let export = export(
        vec![
            text("flagmeter.tenant", "acme"),
            text("service.name", "chatbot"),
        ],
        vec![
            span(
                1,
                vec![
                    text("gen_ai.request.model", "gpt-4o"),
                    text("gen_ai.response.model", "gpt-4o-2024-08-06"),
                    text("gen_ai.response.id", "chatcmpl-1"),
                    int("gen_ai.usage.input_tokens", 1000),
                    int("gen_ai.usage.output_tokens", 200),
                    int("gen_ai.usage.cache_read.input_tokens", 600),
                ],
            ),
            span(2, vec![text("http.method", "POST")]),
            span(
                3,
                vec![
                    text("gen_ai.request.model", "claude-3-5-sonnet"),
                    int("gen_ai.usage.prompt_tokens", 40),
                    int("gen_ai.usage.completion_tokens", 2),
                    int("gen_ai.usage.cache_creation.input_tokens", 30),
                ],
            ),
        ],
    );
    let answer = post_protobuf(&app, &export).await;
    assert_eq!(
        answer,
        ExportTraceServiceResponse::default(),
        "all accepted"
    );
    // The exporter retries an export whose answer it lost.
    post_protobuf(&app, &export).await;

    let usage = app
        .wait_for_total("acme", 1242, Duration::from_secs(20))
        .await;
    assert!(app.env.drained(Duration::from_secs(20)).await);
    let (_, usage_after) = app.get_json("/api/usage/acme").await;
    assert_eq!(
        usage_after["totalTokens"], 1242,
        "the retry counted nothing"
    );
    let by_feature = |feature: &str| {
        usage["byFeature"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["feature"] == feature)
            .cloned()
            .unwrap()
    };
    let gpt = by_feature("gpt-4o-2024-08-06");
    assert_eq!(
        [
            &gpt["inputTokens"],
            &gpt["outputTokens"],
            &gpt["cacheReadTokens"],
            &gpt["cacheWriteTokens"]
        ],
        [400, 200, 600, 0]
    );
    let claude = by_feature("claude-3-5-sonnet");
    assert_eq!(
        [
            &claude["inputTokens"],
            &claude["outputTokens"],
            &claude["cacheWriteTokens"]
        ],
        [10, 2, 30]
    );
    let ids: Vec<String> = records(&app).await.into_iter().map(|r| r.id).collect();
    assert!(ids.contains(&"chatcmpl-1".to_owned()));
    assert!(ids.contains(&format!("{}{}", "7e".repeat(16), "03".repeat(8))));
}

#[tokio::test]
async fn a_gzipped_json_export_takes_the_good_spans_and_reports_the_bad_in_partial_success() {
    let app = spawn_app().await;
    let now = Utc::now().timestamp_nanos_opt().unwrap() - 1_000_000_000;
    let attrs = |pairs: &[(&str, Json)]| {
        pairs
            .iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect::<Vec<_>>()
    };
    let span = |id: &str, attributes: Vec<Json>| {
        json!({"traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": id, "name": "chat",
               "kind": 3, "startTimeUnixNano": "1", "endTimeUnixNano": now.to_string(),
               "attributes": attributes, "status": {}})
    };
    let model = (
        "gen_ai.request.model",
        json!({"stringValue": "gpt-4o-mini"}),
    );
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": attrs(&[("service.name", json!({"stringValue": "svc"}))])},
        "scopeSpans": [{"scope": {"name": "openai"}, "spans": [
            span("EEE19B7EC3C1B174", attrs(&[
                model.clone(),
                ("flagmeter.tenant", json!({"stringValue": "globex"})),
                ("gen_ai.usage.input_tokens", json!({"intValue": "12"})),
                ("gen_ai.usage.output_tokens", json!({"intValue": 30})),
            ])),
            span("EEE19B7EC3C1B175", attrs(&[
                model.clone(),
                ("gen_ai.usage.output_tokens", json!({"intValue": 5})),
            ])),
            span("EEE19B7EC3C1B176", attrs(&[
                model.clone(),
                ("flagmeter.tenant", json!({"stringValue": "globex"})),
                ("gen_ai.usage.input_tokens", json!({"intValue": 5})),
                ("gen_ai.usage.cache_read.input_tokens", json!({"intValue": 9})),
            ])),
            span("EEE19B7EC3C1B177", vec![]),
        ]}]
    }]});
    let response = post(
        &app.client,
        &app,
        "application/json",
        true,
        serde_json::to_vec(&body).unwrap(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(content_type(&response).starts_with("application/json"));
    let answer: Json = response.json().await.unwrap();
    let partial = &answer["partialSuccess"];
    assert_eq!(partial["rejectedSpans"], "2", "{answer}");
    let message = partial["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("eee19b7ec3c1b175: no `flagmeter.tenant` attribute"),
        "{message}"
    );
    assert!(message.contains("less than its cached tokens"), "{message}");

    let stored = records(&app).await;
    assert_eq!(stored.len(), 1);
    let record = &stored[0];
    assert_eq!(
        (
            record.tenant.as_str(),
            record.feature.as_str(),
            record.tokens
        ),
        ("globex", "gpt-4o-mini", 42)
    );
    assert_eq!(
        record.id,
        "5b8efff798038103d269b633813fc60ceee19b7ec3c1b174"
    );
    assert_eq!(record.occurred_ms, now / 1_000_000);
}

#[tokio::test]
async fn exports_need_an_ingest_key_and_spans_of_other_tenants_are_rejected() {
    let app = spawn_app().await;
    let body = export(
        vec![],
        vec![
            span(
                1,
                vec![
                    text("flagmeter.tenant", "acme"),
                    text("gen_ai.request.model", "m"),
                    int("gen_ai.usage.output_tokens", 7),
                ],
            ),
            span(
                2,
                vec![
                    text("flagmeter.tenant", "globex"),
                    text("gen_ai.request.model", "m"),
                    int("gen_ai.usage.output_tokens", 8),
                ],
            ),
        ],
    )
    .encode_to_vec();
    let anonymous = reqwest::Client::new();
    let response = post(
        &anonymous,
        &app,
        "application/x-protobuf",
        false,
        body.clone(),
    )
    .await;
    assert_client_error(response, 401).await;
    let reader = app.tenant_reader("acme").await;
    let response = post(
        &reader.client,
        &app,
        "application/x-protobuf",
        false,
        body.clone(),
    )
    .await;
    assert_client_error(response, 403).await;

    let acme = create_key(
        &app,
        json!({"name": "acme otel", "scopes": ["ingest"], "tenant": "acme"}),
    )
    .await;
    let response = post(&acme.client, &app, "application/x-protobuf", false, body).await;
    assert_eq!(response.status().as_u16(), 200);
    let answer = ExportTraceServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    let partial = answer.partial_success.expect("one span rejected");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial
            .error_message
            .contains("may not ingest for tenant `globex`"),
        "{}",
        partial.error_message
    );
    let stored = records(&app).await;
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].tenant.as_str(), stored[0].tokens), ("acme", 7));
}

#[tokio::test]
async fn bodies_that_cannot_be_read_are_refused_with_json_errors() {
    let app = spawn_app().await;
    let client = &app.client;
    let response = post(
        client,
        &app,
        "application/x-protobuf",
        false,
        vec![0xff, 0xff, 0xff],
    )
    .await;
    let error = assert_client_error(response, 400).await;
    assert_eq!(error["error"], "invalid OTLP export");
    let response = post(
        client,
        &app,
        "application/json",
        false,
        br#"{"resourceSpans": 5}"#.to_vec(),
    )
    .await;
    assert_client_error(response, 400).await;
    let response = post(client, &app, "text/plain", false, b"hi".to_vec()).await;
    assert_client_error(response, 415).await;
    let json = "application/json";
    let response = post_encoded(client, &app, json, Some("br"), b"{}".to_vec()).await;
    assert_client_error(response, 415).await;
    let response = post_encoded(client, &app, json, Some("gzip"), b"not gzip".to_vec()).await;
    assert_client_error(response, 400).await;
    // Small once compressed, over the body limit once inflated.
    let bomb = vec![b' '; testkit::TEST_BODY_LIMIT + 1];
    let response = post(client, &app, "application/json", true, bomb).await;
    assert_client_error(response, 413).await;
    // Within the limit once inflated: whitespace around an empty export.
    let mut padded = vec![b' '; testkit::TEST_BODY_LIMIT - 2];
    padded.extend_from_slice(b"{}");
    let response = post(client, &app, "application/json", true, padded).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.json::<Json>().await.unwrap(), json!({}));
    assert!(records(&app).await.is_empty());
}

#[tokio::test]
async fn the_spec_documents_the_otlp_route_with_both_encodings() {
    let app = spawn_app().await;
    let (_, spec) = app.get_json("/openapi.json").await;
    let operation = &spec["paths"]["/v1/traces"]["post"];
    assert_eq!(operation["operationId"], "exportTraces");
    for media in ["application/x-protobuf", "application/json"] {
        assert!(
            operation["requestBody"]["content"][media].is_object(),
            "{media}"
        );
        assert!(
            operation["responses"]["200"]["content"][media].is_object(),
            "{media}"
        );
    }
    assert!(operation["responses"]["413"].is_object());
}
