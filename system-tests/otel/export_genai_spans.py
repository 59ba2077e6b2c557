"""Exports GenAI spans to FlagMeter with the real OpenTelemetry Python SDK.

Configured only as the README and docs/api.md tell users to configure it: the standard
OTEL_EXPORTER_OTLP_* environment variables (endpoint, the API key as an
Authorization header, gzip). The tenant is a resource attribute, and one
span overrides it with its own. Exits 0 only if every export succeeded.

The expected totals (checked by the Rust test that runs this script):
  acme:   chat 1 (1000 in, of which 600 cache read and 100 cache write; 200 out)
          = 300 + 600 + 100 + 200 = 1200, and chat 3 (50 in, 7 out) = 57
  globex: chat 2 (old attribute names: 40 prompt, 2 completion) = 42
A span without usage and a span without a model are not counted.
"""

import sys

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult


class CheckedExporter(OTLPSpanExporter):
    """The SDK's exporter, remembering whether each export succeeded."""

    results = []

    def export(self, spans):
        result = super().export(spans)
        self.results.append(result)
        return result


def main():
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": "flagmeter-otel-test", "flagmeter.tenant": "acme"}
        )
    )
    exporter = CheckedExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("flagmeter-otel-test")

    with tracer.start_as_current_span("agent run"):
        with tracer.start_as_current_span("chat gpt-4o") as span:
            span.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.response.model": "gpt-4o-2024-08-06",
                    "gen_ai.response.id": "chatcmpl-otel-1",
                    "gen_ai.usage.input_tokens": 1000,
                    "gen_ai.usage.output_tokens": 200,
                    "gen_ai.usage.cache_read.input_tokens": 600,
                    "gen_ai.usage.cache_creation.input_tokens": 100,
                }
            )
        with tracer.start_as_current_span("chat claude") as span:
            span.set_attributes(
                {
                    "flagmeter.tenant": "globex",
                    "gen_ai.request.model": "claude-3-5-haiku",
                    "gen_ai.usage.prompt_tokens": 40,
                    "gen_ai.usage.completion_tokens": 2,
                }
            )
        with tracer.start_as_current_span("chat gpt-4o-mini") as span:
            span.set_attributes(
                {
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.usage.input_tokens": 50,
                    "gen_ai.usage.output_tokens": 7,
                }
            )
        with tracer.start_as_current_span("no model") as span:
            span.set_attribute("gen_ai.usage.output_tokens", 9)

    provider.force_flush()
    provider.shutdown()
    results = exporter.results
    print(f"exports: {[r.name for r in results]}")
    if not results or any(r is not SpanExportResult.SUCCESS for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
