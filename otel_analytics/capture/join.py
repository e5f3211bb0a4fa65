"""The GenAI spans of other instrumentations for the calls otel-analytics captures.

An SDK may make its own span for an API call (the anthropic SDK does unless
``ANTHROPIC_OPEN_TELEMETRY=false``), and so may a peer instrumentation (OpenLLMetry,
``openai-v2``), with the call's ``gen_ai.usage.*`` counts. otel-analytics records the call as an
interaction of the conversation too (in the session's trace, priced, for the tracker), so a
backend that sums ``gen_ai.usage.*`` would count it twice. When the capture sees such a span
current, it names the interaction on it (``analytics.counted_in``) and links the two both ways;
this processor then, as the span ends, moves its usage counts to ``analytics.sdk.gen_ai.usage.*``:
the call is counted once everywhere, and the SDK's span keeps everything else.

The SDK freezes a span's attributes before any processor sees it end, so the move is made on the
frozen attributes (the SDK's ``BoundedAttributes``, read and checked at run time, as
``finished_spans`` reads the SDK), by the provider's first processor, before any exporter's
processor has the span. Where the SDK is not built that way, nothing is moved and a warning says
that such calls may be counted twice by backends that sum every span.
"""

from __future__ import annotations

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, SynchronousMultiSpanProcessor
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

from .. import attributes as attrs
from .._guard import warn_once

_USAGE_PREFIX = "gen_ai.usage."


class JoinForeignGenAISpans(SpanProcessor):
    """Moves the usage counts of a foreign GenAI span that otel-analytics counted elsewhere."""

    def on_end(self, span: ReadableSpan) -> None:
        found = span.attributes
        if not found or attrs.COUNTED_IN not in found:
            return
        inner = getattr(span, "_attributes", None)
        store = getattr(inner, "_dict", None) if type(inner) is BoundedAttributes else None
        if not isinstance(store, dict):
            warn_once(
                "join:sdk",
                "otel-analytics: this OpenTelemetry SDK's spans cannot be amended; an SDK's own GenAI span "
                "keeps its gen_ai.usage.* and backends that sum every span may count such calls twice.",
            )
            return
        for key in [key for key in store if key.startswith(_USAGE_PREFIX)]:
            store[attrs.MOVED_USAGE_PREFIX + key] = store.pop(key)


def add_first(provider: SdkTracerProvider, processor: SpanProcessor) -> None:
    """Add ``processor`` to the provider ahead of those it has: it must see a span end before any
    exporter does. Appended where the provider is not built as this reads it."""
    active = getattr(provider, "_active_span_processor", None)
    lock = getattr(active, "_lock", None)
    if type(active) is SynchronousMultiSpanProcessor and lock is not None:
        with lock:
            current = getattr(active, "_span_processors", None)
            if isinstance(current, tuple):
                active._span_processors = (processor, *current)
                return
    provider.add_span_processor(processor)
