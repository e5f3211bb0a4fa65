"""Target 4: the tracker exporter's CPU per interaction, next to the OTLP/HTTP exporter's.

Both export the same finished interaction spans, in batches of 1,000 (the tracker processor's
batch), to a sink on 127.0.0.1 that runs in its own process and answers at once. The figure is
this process's CPU time (``time.process_time()``, every thread) per span: for the tracker exporter
that is mapping each span onto the contract, JSON encoding and HTTP (ten batch requests of 100,
sent concurrently); for OTLP, protobuf encoding and HTTP. OTLP also exports spans shaped like
those of its reference figure (8 attributes): that ratio, not OTLP's cost on the interaction spans
(which carry twice the attributes), is how fast this machine runs today.
"""

from __future__ import annotations

import sys
import time

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util.types import AttributeValue

import otel_analytics as oa
from bench import servers
from bench.common import QUICK, header, judge, rounds
from otel_analytics.exporters.tracker import TrackerSpanExporter
from otel_analytics.testing import CaptureAnalytics

SPANS = 2000 if QUICK else 10000
ROUNDS = 2 if QUICK else 7
ANCHOR_OTLP_US = 29.0  # shared/research/perf-anchors.md: OTLP/HTTP exporter CPU per span


def interaction_spans(count: int) -> list[ReadableSpan]:
    capture = CaptureAnalytics()
    try:
        for n in range(count):
            with (
                oa.session(f"conv-{n % 50}", user_id=f"user-{n % 7}", start=False, end=False),
                oa.interaction("chat", model="gpt-4o-mini") as it,
            ):
                it.record_response(
                    {
                        "id": f"chatcmpl-{n}",
                        "model": "gpt-4o-mini-2024-07-18",
                        "choices": [{"finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1200, "completion_tokens": 300},
                    }
                )
        return list(capture.finished())
    finally:
        capture.close()


def reference_spans(count: int) -> list[ReadableSpan]:
    """Spans shaped like the reference figure's (perf-anchors.md: 8 attributes, ~350 B in OTLP):
    OTLP's cost on them, against that figure, says how fast this machine is today. The
    interaction spans above carry twice the attributes, so OTLP's cost on them says nothing of it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 300,
        "session.id": "conv-1",
        "user.id": "user-1",
        "analytics.interaction.type": "chat",
    }
    for _ in range(count):
        tracer.start_span("chat gpt-4o-mini", attributes=attributes).end()
    provider.shutdown()
    return list(exporter.get_finished_spans())


def cpu_per_span(exporter: object, batches: list[list[ReadableSpan]]) -> float:
    started = time.process_time()
    for batch in batches:
        exporter.export(batch)  # type: ignore[attr-defined]
    return (time.process_time() - started) / sum(len(b) for b in batches) * 1e6


def main() -> int:
    header("exporters: CPU per exported interaction", __doc__ or "")
    spans = interaction_spans(SPANS)
    batches = [spans[i : i + 1000] for i in range(0, len(spans), 1000)]
    reference = reference_spans(SPANS)
    reference_batches = [reference[i : i + 1000] for i in range(0, len(reference), 1000)]
    sink, url = servers.sink()
    try:
        tracker = TrackerSpanExporter(url=url)
        otlp = OTLPSpanExporter(endpoint=f"{url}/v1/traces")
        tracker.export(batches[0])  # sessions started, connections open
        otlp.export(batches[0])
        measured = rounds(
            {
                "tracker": lambda: cpu_per_span(tracker, batches),
                "otlp": lambda: cpu_per_span(otlp, batches),
                "otlp, reference spans": lambda: cpu_per_span(otlp, reference_batches),
            },
            ROUNDS,
            "p10",
        )
        counts = httpx.get(f"{url}/count").json()
        tracker.shutdown()
        otlp.shutdown()  # type: ignore[no-untyped-call]
    finally:
        servers.stop(sink)
    factor = measured["otlp, reference spans"] / ANCHOR_OTLP_US
    print(
        f"tracker exporter: {measured['tracker']:.1f} µs/span   OTLP/HTTP exporter: {measured['otlp']:.1f} µs/span   "
        f"ratio {measured['tracker'] / measured['otlp']:.2f}   (p10 of {ROUNDS} rounds x {len(spans)} spans)"
    )
    print(
        f"the sink received {counts['interactions']} interactions in {counts['requests']} requests, "
        f"and {counts['otlp_requests']} OTLP requests"
    )
    print(
        f"machine speed: OTLP on spans shaped like the reference's costs {measured['otlp, reference spans']:.1f} "
        f"µs/span, {factor:.2f}x its reference figure ({ANCHOR_OTLP_US:g} µs/span)\n"
    )
    ok = judge(
        "4",
        "tracker exporter CPU per exported interaction, vs the OTLP/HTTP exporter's per span",
        measured["tracker"],
        measured["otlp"],
        0.35,
        unit="µs",
        yardstick_name="OTLP/HTTP exporter",
    )
    return 0 if QUICK or ok else 1


if __name__ == "__main__":
    sys.exit(main())
