//! What a GenAI span is worth: the event it becomes, or why it is
//! skipped or rejected, under the OpenTelemetry GenAI semantic
//! conventions.
//!
//! | event | span attribute |
//! |---|---|
//! | `inputTokens` | `gen_ai.usage.input_tokens` (else `gen_ai.usage.prompt_tokens`) minus both cache classes |
//! | `outputTokens` | `gen_ai.usage.output_tokens` (else `gen_ai.usage.completion_tokens`) |
//! | `cacheReadTokens` | `gen_ai.usage.cache_read.input_tokens` |
//! | `cacheWriteTokens` | `gen_ai.usage.cache_creation.input_tokens` |
//! | `feature` | `gen_ai.response.model`, else `gen_ai.request.model` |
//! | `tenant` | the span's attribute named by `FLAGMETER_OTLP_TENANT_ATTRIBUTE`, else the resource's |
//! | `id` | `gen_ai.response.id`, else the trace id and span id in hex, joined |
//! | `timestamp` | the span's end |
//!
//! The conventions count cached tokens inside `gen_ai.usage.input_tokens`
//! ("SHOULD include all types of input tokens, including cached tokens"),
//! and the cache attributes "SHOULD be included in" it: the event's input
//! class is what is left once both cache classes are taken out, so no
//! token is counted (or priced) twice. A span whose cache tokens exceed its
//! input tokens contradicts that and is rejected.
//!
//! A span without either usage attribute is not a model call: skipped. So
//! is one whose usage is all zeros (nothing to count). An id from
//! `gen_ai.response.id` makes two spans of one call (an SDK's and a
//! framework's around it) one event.

use chrono::{DateTime, Utc};
use domain::validate::{self, MAX_TOKENS, TokenClasses};
use stream::EventRecord;

use super::proto::{KeyValue, Span, Value, hex};

/// The span attributes read.
pub mod attr {
    pub const INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    pub const OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    /// Before semantic conventions 1.27.
    pub const PROMPT_TOKENS: &str = "gen_ai.usage.prompt_tokens";
    /// Before semantic conventions 1.27.
    pub const COMPLETION_TOKENS: &str = "gen_ai.usage.completion_tokens";
    pub const CACHE_READ_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
    pub const CACHE_CREATION_TOKENS: &str = "gen_ai.usage.cache_creation.input_tokens";
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    pub const RESPONSE_ID: &str = "gen_ai.response.id";
}

/// What became of one span.
#[derive(Debug, PartialEq)]
pub enum SpanOutcome {
    /// No usage to count.
    Skipped,
    /// A usage event, for the caller to authorize by its tenant.
    Event(EventRecord),
    /// Usage that cannot be counted, and why (for `partial_success`).
    Rejected(String),
}

/// Where a span's attributes are looked up.
pub struct SpanContext<'a> {
    /// The attributes of the span's resource.
    pub resource: &'a [KeyValue],
    /// `FLAGMETER_OTLP_TENANT_ATTRIBUTE`.
    pub tenant_attribute: &'a str,
    /// When the export was received.
    pub now: DateTime<Utc>,
}

/// The value of the attribute `key`, if present (the last one if given
/// twice, as the SDKs overwrite).
fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .rev()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// A token count: an integer (or a whole double, as some SDKs send
/// numbers) from 0 to [`MAX_TOKENS`].
fn count(attributes: &[KeyValue], key: &str) -> Result<Option<i64>, String> {
    let value = match find(attributes, key) {
        None => return Ok(None),
        Some(Value::Int(n)) => *n,
        Some(Value::Double(d)) if d.fract() == 0.0 && d.abs() <= MAX_TOKENS as f64 => *d as i64,
        Some(other) => return Err(format!("`{key}` must be an integer, not {other:?}")),
    };
    if (0..=MAX_TOKENS).contains(&value) {
        Ok(Some(value))
    } else {
        Err(format!(
            "`{key}` is {value}; must be from 0 to {MAX_TOKENS}"
        ))
    }
}

/// A string attribute.
fn text<'a>(attributes: &'a [KeyValue], key: &str) -> Result<Option<&'a str>, String> {
    match find(attributes, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("`{key}` must be a string, not {other:?}")),
    }
}

/// The first of `keys` present.
fn first_count(attributes: &[KeyValue], keys: [&str; 2]) -> Result<Option<i64>, String> {
    for key in keys {
        if let Some(n) = count(attributes, key)? {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// What `span` is worth (see the module docs).
pub fn outcome(span: &Span, context: &SpanContext) -> SpanOutcome {
    match event(span, context) {
        Ok(Some(record)) => SpanOutcome::Event(record),
        Ok(None) => SpanOutcome::Skipped,
        Err(reason) => SpanOutcome::Rejected(format!(
            "span {}/{}: {reason}",
            hex(&span.trace_id),
            hex(&span.span_id)
        )),
    }
}

fn event(span: &Span, context: &SpanContext) -> Result<Option<EventRecord>, String> {
    let attributes = span.attributes.as_slice();
    let input = first_count(attributes, [attr::INPUT_TOKENS, attr::PROMPT_TOKENS])?;
    let output = first_count(attributes, [attr::OUTPUT_TOKENS, attr::COMPLETION_TOKENS])?;
    if input.is_none() && output.is_none() {
        return Ok(None);
    }
    let cache_read = count(attributes, attr::CACHE_READ_TOKENS)?;
    let cache_write = count(attributes, attr::CACHE_CREATION_TOKENS)?;
    let cached = cache_read.unwrap_or(0) + cache_write.unwrap_or(0);
    let uncached = input.unwrap_or(0) - cached;
    if uncached < 0 {
        return Err(format!(
            "`{}` ({}) is less than its cached tokens ({cached}); the input tokens include them",
            attr::INPUT_TOKENS,
            input.unwrap_or(0)
        ));
    }
    let classes = TokenClasses {
        input: input.map(|_| uncached),
        output,
        cache_read,
        cache_write,
    };
    if classes.sum() == Some(0) {
        return Ok(None);
    }
    let tenant = match text(attributes, context.tenant_attribute)? {
        Some(tenant) => tenant,
        None => text(context.resource, context.tenant_attribute)?.ok_or_else(|| {
            format!(
                "no `{}` attribute on the span or its resource names the tenant",
                context.tenant_attribute
            )
        })?,
    };
    let feature = match text(attributes, attr::RESPONSE_MODEL)? {
        Some(model) => model,
        None => text(attributes, attr::REQUEST_MODEL)?.ok_or_else(|| {
            format!(
                "neither `{}` nor `{}` names the model",
                attr::RESPONSE_MODEL,
                attr::REQUEST_MODEL
            )
        })?,
    };
    let id = match text(attributes, attr::RESPONSE_ID)? {
        Some(id) => id.to_owned(),
        None if span.trace_id.is_empty() || span.span_id.is_empty() => {
            return Err(format!(
                "no `{}`, and no trace and span id to stand for it",
                attr::RESPONSE_ID
            ));
        }
        None => format!("{}{}", hex(&span.trace_id), hex(&span.span_id)),
    };
    let ended = end_time(span.end_time_unix_nano)?;
    let invalid = |err: validate::Invalid| err.to_string();
    validate::tenant(tenant).map_err(invalid)?;
    validate::feature(feature).map_err(invalid)?;
    validate::event_id(&id).map_err(invalid)?;
    validate::occurred_at(ended, context.now).map_err(invalid)?;
    let tokens = validate::event_tokens(None, &classes).map_err(invalid)?;
    Ok(Some(
        EventRecord::new(
            id,
            tenant.to_owned(),
            feature.to_owned(),
            tokens,
            ended.timestamp_millis(),
            context.now.timestamp_millis(),
        )
        .with_classes(classes),
    ))
}

/// The span's end as a time; 0 means it was never set.
fn end_time(unix_nano: u64) -> Result<DateTime<Utc>, String> {
    let nanos = i64::try_from(unix_nano).ok().filter(|n| *n > 0);
    nanos
        .map(DateTime::from_timestamp_nanos)
        .ok_or_else(|| format!("endTimeUnixNano {unix_nano} is not a time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(key: &str, n: i64) -> KeyValue {
        KeyValue::new(key, Value::Int(n))
    }

    fn string(key: &str, s: &str) -> KeyValue {
        KeyValue::new(key, Value::String(s.into()))
    }

    const NOW: i64 = 1_800_000_000_000_000_000;

    fn span(attributes: Vec<KeyValue>) -> Span {
        Span {
            trace_id: vec![0x0a; 16],
            span_id: vec![0xb0; 8],
            end_time_unix_nano: NOW as u64 - 1_000_000_000,
            attributes,
        }
    }

    fn worth(span: &Span, resource: &[KeyValue]) -> SpanOutcome {
        let context = SpanContext {
            resource,
            tenant_attribute: "flagmeter.tenant",
            now: DateTime::from_timestamp_nanos(NOW),
        };
        outcome(span, &context)
    }

    fn event_of(span: &Span, resource: &[KeyValue]) -> EventRecord {
        match worth(span, resource) {
            SpanOutcome::Event(record) => record,
            other => panic!("{other:?}"),
        }
    }

    fn rejected(span: &Span, resource: &[KeyValue]) -> String {
        match worth(span, resource) {
            SpanOutcome::Rejected(reason) => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cached_tokens_are_taken_out_of_the_input_tokens() {
        let record = event_of(
            &span(vec![
                string("flagmeter.tenant", "acme"),
                string(attr::REQUEST_MODEL, "gpt-4o"),
                string(attr::RESPONSE_MODEL, "gpt-4o-2024-08-06"),
                string(attr::RESPONSE_ID, "chatcmpl-1"),
                int(attr::INPUT_TOKENS, 1000),
                int(attr::OUTPUT_TOKENS, 200),
                int(attr::CACHE_READ_TOKENS, 600),
                int(attr::CACHE_CREATION_TOKENS, 100),
            ]),
            &[],
        );
        assert_eq!(record.tenant, "acme");
        assert_eq!(record.feature, "gpt-4o-2024-08-06");
        assert_eq!(record.id, "chatcmpl-1");
        assert_eq!(record.tokens, 1200);
        assert_eq!(
            record.classes(),
            TokenClasses {
                input: Some(300),
                output: Some(200),
                cache_read: Some(600),
                cache_write: Some(100),
            }
        );
        assert_eq!(record.occurred_ms, NOW / 1_000_000 - 1000);
    }

    #[test]
    fn the_resource_names_the_tenant_and_the_ids_the_event_by_default() {
        let record = event_of(
            &span(vec![
                string(attr::REQUEST_MODEL, "claude-3-5-sonnet"),
                int(attr::PROMPT_TOKENS, 10),
                int(attr::COMPLETION_TOKENS, 5),
            ]),
            &[string("flagmeter.tenant", "globex")],
        );
        assert_eq!(record.tenant, "globex");
        assert_eq!(record.feature, "claude-3-5-sonnet");
        assert_eq!(record.id, format!("{}{}", "0a".repeat(16), "b0".repeat(8)));
        assert_eq!(record.classes().input, Some(10));
        assert_eq!(record.tokens, 15);
    }

    #[test]
    fn spans_without_usage_are_skipped() {
        assert_eq!(worth(&span(vec![]), &[]), SpanOutcome::Skipped);
        let zero = span(vec![
            int(attr::INPUT_TOKENS, 0),
            int(attr::OUTPUT_TOKENS, 0),
        ]);
        assert_eq!(worth(&zero, &[]), SpanOutcome::Skipped);
    }

    #[test]
    fn usage_that_cannot_be_counted_is_rejected_with_its_reason() {
        let model = || string(attr::REQUEST_MODEL, "m");
        let tenant = || string("flagmeter.tenant", "acme");
        let usage = || int(attr::OUTPUT_TOKENS, 5);
        for (attributes, reason) in [
            (vec![model(), usage()], "no `flagmeter.tenant` attribute"),
            (vec![tenant(), usage()], "names the model"),
            (
                vec![tenant(), model(), int(attr::INPUT_TOKENS, -1)],
                "must be from 0",
            ),
            (
                vec![tenant(), model(), string(attr::INPUT_TOKENS, "5")],
                "must be an integer",
            ),
            (
                vec![
                    tenant(),
                    model(),
                    int(attr::INPUT_TOKENS, 5),
                    int(attr::CACHE_READ_TOKENS, 6),
                ],
                "less than its cached tokens",
            ),
            (
                vec![string("flagmeter.tenant", "-x"), model(), usage()],
                "tenant: must start",
            ),
            (
                vec![tenant(), model(), usage(), string(attr::RESPONSE_ID, "")],
                "id: must not be empty",
            ),
        ] {
            let why = rejected(&span(attributes), &[]);
            assert!(why.contains(reason), "{why} lacks {reason}");
            assert!(why.starts_with("span 0a0a"), "{why}");
        }
        let old = Span {
            end_time_unix_nano: (NOW - 40 * 86_400 * 1_000_000_000) as u64,
            ..span(vec![tenant(), model(), usage()])
        };
        assert!(rejected(&old, &[]).contains("timestamp"));
        let unended = Span {
            end_time_unix_nano: 0,
            ..span(vec![tenant(), model(), usage()])
        };
        assert!(rejected(&unended, &[]).contains("endTimeUnixNano"));
    }
}
