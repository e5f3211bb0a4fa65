"""Targets 10a-c counted in instructions: what capturing a provider call adds, beside openai-v2.

``bench_capture`` times the calls in CPU, and on this shared VM the ratio of two such small
differences moves by a third from one run to the next. Here each variant runs once under
valgrind's callgrind, which counts the instructions executed, whatever the neighbours do. The
real ``openai`` SDK (on httpx2) calls an in-process transport (``httpx2.MockTransport``) that
answers as OpenAI does: a completion, or a 20-event stream asked for usage. No socket: the SDK's
own work is the same in every variant, and what a variant adds is what its instrumentation does.
One process per variant (the SDK alone; the capture; ``@oa.interaction`` on the SDK's calls,
capture off; the contrib ``openai-v2`` instrumentation), after a warm-up, makes N JSON calls,
then N/4 streamed ones; a call to ``binascii.crc_hqx`` (which nothing else here calls) marks the
end of each phase, and callgrind dumps its count there. The ratios of ``bench_capture`` are
judged on the counts: the table of ``make bench`` shows them beside the CPU ratios. Skipped where
valgrind is not installed; without openai-v2, the counts are printed and nothing is judged.
"""

from __future__ import annotations

import gc
from typing import Any

import httpx2
import openai
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import otel_analytics as oa
from bench import callgrind
from bench.bench_capture import _peer, json_call, judge_added, stream_call
from bench.common import COMPLETION, QUICK, NullExporter, header, sse_events
from otel_analytics import capture

VARIANTS = ("bare", "capture", "decorated", "openai-v2")
N_JSON = 2 if QUICK else 200
N_STREAM = 1 if QUICK else 50
WARM_UP = (3, 1) if QUICK else (400, 100)  # JSON, stream: imports, caches, the interpreter's specialisation


class _Events(httpx2.SyncByteStream):
    """An SSE answer, one event a chunk, as the provider's connection hands them on."""

    def __init__(self, events: list[bytes]) -> None:
        self._events = events

    def __iter__(self) -> Any:
        yield from self._events


def _provider() -> httpx2.MockTransport:
    import json

    completion = json.dumps(COMPLETION).encode()
    events = sse_events(20)

    def answer(request: httpx2.Request) -> httpx2.Response:
        if b'"stream":true' in request.content:
            return httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=_Events(events))
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=completion)

    return httpx2.MockTransport(answer)


def child(variant: str) -> None:
    """Make the calls with one variant, marking the end of the warm-up and of each phase.

    The spans go to an exporter that drops them as they end (a simple processor): a batch
    processor that never exports (its thread would run at moments valgrind's scheduler decides)
    would keep every span alive, and the collector's passes over them, longer with every call,
    would land in whichever phase crosses a threshold (measured: a stream's capture counted
    219k instructions in one run and 310k in the next)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(NullExporter()))
    handle = oa.configure(tracer_provider=provider, exporters=())
    capture.uninstall()
    if variant == "capture":
        capture.instrument()
    elif variant == "openai-v2":
        peer = _peer()
        assert peer is not None
        peer.instrument(tracer_provider=provider)
    client = openai.OpenAI(
        base_url="http://api.example.test/v1",
        api_key="sk-bench",
        max_retries=0,
        http_client=httpx2.Client(transport=_provider()),
    )
    decorated = variant == "decorated"
    with oa.session("conv-bench", user_id="bench", start=False, end=False):
        for call, count in zip((json_call, stream_call), WARM_UP, strict=True):
            for _ in range(count):
                call(client, decorated)
        # What start-up made is frozen out of the collector's sight: otherwise a full collection
        # (~100M instructions over the imported modules) lands in whichever phase crosses its
        # threshold. Collections of what the calls allocate are still counted.
        gc.collect()
        gc.freeze()
        callgrind.mark()
        for call, count in ((json_call, N_JSON), (stream_call, N_STREAM)):
            for _ in range(count):
                call(client, decorated)
            callgrind.mark()
    handle.shutdown()


def main() -> int:
    header("Capture of provider calls: instructions added per call (callgrind), beside openai-v2", __doc__ or "")
    # A smoke run counts two (valgrind makes the SDK's imports slow); without openai-v2, three.
    variants = VARIANTS[:2] if QUICK else VARIANTS if _peer() is not None else VARIANTS[:-1]
    counted = callgrind.count("bench.bench_capture_instructions", variants, 2)
    if counted is None:
        return 0
    per = {v: {"JSON": json / N_JSON, "stream": stream / N_STREAM} for v, (json, stream) in counted.items()}
    ok = True
    for label in ("JSON", "stream"):
        added = {v: per[v][label] - per["bare"][label] for v in variants if v != "bare"}
        print(
            f"  {label}: bare {per['bare'][label]:,.0f} instructions a call; added "
            + ", ".join(f"{v} +{value:,.0f}" for v, value in added.items())
        )
        ok &= judge_added(label, added, unit="instructions", kind="instructions")
    return 0 if ok or QUICK else 1


if __name__ == "__main__":
    callgrind.entry(child, main)
