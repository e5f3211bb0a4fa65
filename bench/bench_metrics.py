"""Target 9: recording the GenAI metrics adds at most 10 % to the CPU an interaction costs on the
span path.

One process, otel-analytics configured on an SDK tracer provider (a batch processor and an
exporter that drops). Each round records a block of interactions with the metrics off (the
runtime's recorder unset) and a block with each of the two recorders: on a meter provider
otel-analytics builds (``ANALYTICS_METRICS_EXPORTERS``: its histograms aggregated by the package,
a reader whose exporter drops) and on one it joins (an app's: every measurement through the SDK's
instruments, an in-memory reader); the order rotates. Each "on" block ends with a collection
(and the export), inside the timed region, so the work put off until a reader collects counts.
CPU is the process's (all threads), per interaction, the 10th percentile of the rounds (see
bench/common.py). Three workloads: a chat recorded with ``track_interaction`` (two token counts,
the duration, the cost, the count), a decorated stream of 20 chunks (also its time to first
chunk and 19 times per chunk), and a JSON chat request through the middleware (the ASGI app
called in this process). Printed beside them, the yardstick the cost comes from: one measurement
through the SDK's own histogram.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExporter, MetricExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_analytics as oa
from bench.common import QUICK, NullExporter, header, judge, summarise
from otel_analytics import runtime
from otel_analytics.exporters.metrics import periodic_reader
from otel_analytics.metrics import SPECS, GenAIMetrics, metrics_for
from otel_analytics.metrics_export import Histograms

BLOCK = 50 if QUICK else 400
ROUNDS = 3 if QUICK else 40


def chat() -> None:
    oa.track_interaction(type="chat", model_name="gpt-4o-mini", prompt_tokens=1200, completion_tokens=300)


@oa.interaction("chat", model="gpt-4o-mini")
def _stream() -> Iterator[dict[str, Any]]:
    for n in range(19):
        yield {"choices": [{"index": 0, "delta": {"content": f"w{n} "}}]}
    yield {"choices": [], "usage": {"prompt_tokens": 300, "completion_tokens": 19}}


def stream() -> None:
    for _ in _stream():
        pass


_APP: Any = None
_LOOP: Any = None


def request() -> None:
    """A JSON chat request through the middleware, in this process (the ASGI app called directly)."""
    global _APP, _LOOP
    if _APP is None:
        import asyncio

        from bench.common import chat_app
        from otel_analytics.asgi import AnalyticsMiddleware

        _APP, _LOOP = AnalyticsMiddleware(chat_app()), asyncio.new_event_loop()
    _LOOP.run_until_complete(_call(_APP))


async def _call(app: Any) -> None:
    body = b'{"conversationId": "bench-conv", "model": "gpt-4o-mini", "text": "hi"}'
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/messages",
        "raw_path": b"/api/messages",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"x-user-id", b"u1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "root_path": "",
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    await app(scope, receive, send)


def block(work: Callable[[], None], collect: Callable[[], object] | None) -> float:
    """CPU seconds per interaction of one block (and the collection after it)."""
    started = time.process_time()
    for _ in range(BLOCK):
        work()
    if collect is not None:
        collect()
    return (time.process_time() - started) / BLOCK


def sdk_record_cost(provider: MeterProvider) -> float:
    histogram = provider.get_meter("yardstick").create_histogram("yardstick", unit="s")
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "server.address": "api.openai.com",
    }
    count = 2000 if QUICK else 20000
    started = time.process_time()
    for _ in range(count):
        histogram.record(0.25, attributes)
    return (time.process_time() - started) / count


class _DropMetrics(MetricExporter):
    def __init__(self) -> None:
        super().__init__(preferred_temporality={})

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


WORKLOADS: tuple[tuple[str, Callable[[], None]], ...] = (
    ("chat (track_interaction)", chat),
    ("stream of 20 chunks (decorator)", stream),
    ("JSON chat request (middleware)", request),
)
Variants = dict[str, tuple[GenAIMetrics | None, Callable[[], object] | None]]


class Setup:
    """otel-analytics configured on an SDK tracer provider (``processor``, else a batch processor
    whose exporter drops) and on a meter provider of the app's (joined: the SDK's
    instruments, an in-memory reader); a second meter provider built as ``configure()`` builds
    one (the histograms aggregated by the package, a reader whose exporter drops). ``variants``:
    each variant's recorder and the collection that ends its blocks."""

    def __init__(self, processor: SpanProcessor | None = None) -> None:
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(processor or BatchSpanProcessor(NullExporter()))
        joined_reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[joined_reader], shutdown_on_exit=False)
        self.handle = oa.configure(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, exporters=()
        )
        self.live = runtime.current()
        joined = self.live.metrics
        assert joined is not None
        histograms = Histograms(SPECS)
        resource = Resource.create({})
        built_reader = periodic_reader(_DropMetrics(), histograms, resource, export_interval_millis=math.inf)
        self.built_provider = MeterProvider(metric_readers=[built_reader], resource=resource, shutdown_on_exit=False)
        built = metrics_for(self.built_provider, with_user_id=False, histograms=histograms)
        self.variants: Variants = {
            "off": (None, None),
            "built": (built, built_reader.collect),
            "joined": (joined, joined_reader.get_metrics_data),
        }

    def block(self, variant: str, work: Callable[[], None]) -> float:
        """One block of ``work`` with ``variant``'s recorder: CPU seconds per interaction."""
        recorder, collect = self.variants[variant]
        self.live.metrics = recorder
        return block(work, collect)

    def close(self) -> None:
        self.handle.shutdown()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.built_provider.shutdown()


def judge_variants(name: str, off: float, built: float, joined: float, *, unit: str, kind: str = "cpu") -> bool:
    """9a (a meter provider built here) judged; 9b (one joined: the SDK's own instruments, whose
    cost is the SDK's) printed and recorded, not judged."""
    ok = judge(
        "9a",
        f"{name}, metrics on (a provider built here) vs off",
        built,
        off,
        1.10,
        unit=unit,
        yardstick_name="metrics off",
        kind=kind,
    )
    judge(
        "9b",
        f"{name}, metrics on (a provider joined: the SDK's instruments) vs off",
        joined,
        off,
        1.10,
        unit=unit,
        yardstick_name="metrics off",
        kind=kind,
    )
    return ok


def main() -> int:
    header("GenAI metrics: CPU per interaction, off and on", __doc__ or "")
    setup = Setup()
    ok = True
    try:
        with oa.session("bench-metrics", user_id="u1"):
            for name, work in WORKLOADS:
                figures: dict[str, list[float]] = {variant: [] for variant in setup.variants}
                order = list(setup.variants)
                for r in range(ROUNDS):
                    for variant in order[r % 3 :] + order[: r % 3]:
                        figures[variant].append(setup.block(variant, work))
                base, own, sdk = (summarise(figures[v], "p10") for v in ("off", "built", "joined"))
                print(
                    f"  {name}: {base * 1e6:.1f} µs off; on, a provider built here {own * 1e6:.1f} µs, "
                    f"one joined {sdk * 1e6:.1f} µs"
                )
                ok &= judge_variants(name, base * 1e6, own * 1e6, sdk * 1e6, unit="µs")
        setup.live.metrics = setup.variants["joined"][0]
        yardstick = sdk_record_cost(setup.meter_provider) * 1e6
        print(f"  yardstick: one measurement through the SDK's histogram: {yardstick:.1f} µs")
    finally:
        setup.close()
    return 0 if ok or QUICK else 1


if __name__ == "__main__":
    sys.exit(main())
