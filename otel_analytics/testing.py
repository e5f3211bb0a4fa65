"""Test helpers, also a pytest plugin: the ``capture_analytics`` fixture.

``capture_analytics`` configures otel-analytics on a fresh SDK provider whose spans go to an
in-memory exporter through a synchronous processor (nothing to flush), and a meter provider with
an in-memory reader (``metrics()`` collects), and shuts both down after the test, checking that
no interaction span was left open::

    def test_chat_cost(capture_analytics):
        with oa.session("conv-1", user_id="u1"):
            with oa.interaction("chat", model="gpt-4o") as it:
                it.record_usage(prompt_tokens=10, completion_tokens=5)
        chat = capture_analytics.spans(type="chat")[0]
        assert chat["attributes"]["gen_ai.usage.input_tokens"] == 10
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from . import attributes as attrs
from .configuration import AnalyticsHandle, configure


class CaptureAnalytics:
    """Spans recorded by otel-analytics during one test."""

    __test__ = False

    def __init__(self, provider: TracerProvider | None = None, **settings: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = provider or TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self._open = _OpenSpans()
        self.provider.add_span_processor(self._open)
        self.metric_reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metric_reader], shutdown_on_exit=False)
        settings.setdefault("exporters", ())
        self.handle: AnalyticsHandle = configure(
            tracer_provider=self.provider, meter_provider=self.meter_provider, **settings
        )

    def finished(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def spans(self, *, type: str | None = None, event: str | None = None) -> list[dict[str, Any]]:
        """Finished spans as plain dicts, optionally only one interaction type or session event."""
        out = []
        for span in self.finished():
            span_attrs = dict(span.attributes or {})
            if type is not None and span_attrs.get(attrs.INTERACTION_TYPE) != type:
                continue
            if event is not None and span_attrs.get(attrs.SESSION_EVENT) != event:
                continue
            out.append(span_as_dict(span))
        return out

    def clear(self) -> None:
        self.exporter.clear()

    def metrics(self) -> dict[str, list[dict[str, Any]]]:
        """Collect now: each metric's points (cumulative since the start), as plain dicts with
        ``attributes`` and ``value`` (counters) or ``count``, ``sum``, ``bucket_counts``,
        ``explicit_bounds`` (histograms)."""
        return metric_points(self.metric_reader.get_metrics_data())

    def open_spans(self) -> list[str]:
        """Names of otel-analytics spans started and not (yet) ended."""
        return self._open.names()

    def close(self) -> None:
        left_open = self.open_spans()
        self.handle.shutdown()
        self.provider.shutdown()
        self.meter_provider.shutdown()
        assert not left_open, f"otel-analytics spans never ended: {left_open}"


class _OpenSpans(SpanProcessor):
    # It tracks live spans: a span handed over already ended is never open.
    otel_analytics_finished_spans_ok = True

    def __init__(self) -> None:
        self._open: dict[int, str] = {}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._open[span.context.span_id] = span.name

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None:
            self._open.pop(span.context.span_id, None)

    def names(self) -> list[str]:
        return sorted(self._open.values())


def metric_points(data: Any) -> dict[str, list[dict[str, Any]]]:
    """``MetricsData`` as ``{name: [point, ...]}`` (see :meth:`CaptureAnalytics.metrics`)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for resource_metrics in getattr(data, "resource_metrics", None) or ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points = out.setdefault(metric.name, [])
                for point in metric.data.data_points:
                    found: dict[str, Any] = {"attributes": dict(point.attributes or {}), "unit": metric.unit}
                    if hasattr(point, "bucket_counts"):
                        found.update(
                            count=point.count,
                            sum=point.sum,
                            bucket_counts=list(point.bucket_counts),
                            explicit_bounds=list(point.explicit_bounds),
                        )
                    else:
                        found["value"] = point.value
                    points.append(found)
    return out


def span_as_dict(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "start_time": span.start_time,
        "end_time": span.end_time,
        "links": [format(link.context.span_id, "016x") for link in span.links],
        "events": [event.name for event in span.events],
    }


@pytest.fixture
def capture_analytics() -> Iterator[CaptureAnalytics]:
    capture = CaptureAnalytics()
    try:
        yield capture
    finally:
        capture.close()
