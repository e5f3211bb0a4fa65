"""Target 4: the tracker exporter's CPU per interaction, next to the OTLP/HTTP exporter's.

Both export the same finished interaction spans, in batches of 1,000 (the tracker processor's
batch), to a sink on 127.0.0.1 that runs in its own process and answers at once. The figure is
this process's CPU time (``time.process_time()``, every thread) per span: for the tracker exporter
that is mapping each span onto the contract, JSON encoding and HTTP (ten batch requests of 100,
sent concurrently); for OTLP, protobuf encoding and HTTP.
"""

from __future__ import annotations

import sys
import time

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan

import otel_analytics as oa
from bench import servers
from bench.common import QUICK, header, rounds, verdict
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


def cpu_per_span(exporter: object, batches: list[list[ReadableSpan]]) -> float:
    started = time.process_time()
    for batch in batches:
        exporter.export(batch)  # type: ignore[attr-defined]
    return (time.process_time() - started) / sum(len(b) for b in batches) * 1e6


def main() -> int:
    header("exporters: CPU per exported interaction", __doc__ or "")
    spans = interaction_spans(SPANS)
    batches = [spans[i : i + 1000] for i in range(0, len(spans), 1000)]
    sink, url = servers.sink()
    try:
        tracker = TrackerSpanExporter(url=url)
        otlp = OTLPSpanExporter(endpoint=f"{url}/v1/traces")
        tracker.export(batches[0])  # sessions started, connections open
        otlp.export(batches[0])
        measured = rounds(
            {"tracker": lambda: cpu_per_span(tracker, batches), "otlp": lambda: cpu_per_span(otlp, batches)},
            ROUNDS,
            "p10",
        )
        counts = httpx.get(f"{url}/count").json()
        tracker.shutdown()
        otlp.shutdown()
    finally:
        servers.stop(sink)
    factor = measured["otlp"] / ANCHOR_OTLP_US
    print(
        f"tracker exporter: {measured['tracker']:.1f} µs/span   OTLP/HTTP exporter: {measured['otlp']:.1f} µs/span   "
        f"ratio {measured['tracker'] / measured['otlp']:.2f}   (p10 of {ROUNDS} rounds x {len(spans)} spans)"
    )
    print(
        f"the sink received {counts['interactions']} interactions in {counts['requests']} requests, "
        f"and {counts['otlp_requests']} OTLP requests"
    )
    print(f"machine speed: OTLP costs {factor:.2f}x its reference figure ({ANCHOR_OTLP_US:g} µs/span)\n")
    ok = verdict(
        "4. tracker exporter CPU per interaction",
        measured["tracker"],
        20,
        "µs",
        note=f" [scaled target {20 * factor:.0f}; the OTLP exporter, same run: {measured['otlp']:.0f}]",
    )
    return 0 if QUICK or ok else 1


if __name__ == "__main__":
    sys.exit(main())
