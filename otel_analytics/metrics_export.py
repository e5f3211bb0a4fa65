"""The GenAI histograms, aggregated here and added to what the readers otel-analytics builds export.

Through the SDK's instruments a measurement costs ~9 µs (the SDK cleans and hashes its attributes
every time), and a chat makes three histogram measurements, a stream one more per chunk: several
times what recording the interaction as a span costs. Aggregated here, into the same explicit
buckets, a measurement costs ~1 µs. The points are then added to each export, as the SDK would
have made them: one ``Metric`` per histogram in the ``otel_analytics`` scope, cumulative (from
the first measurement) or delta (since the last export), as the exporter prefers.

Only for readers otel-analytics builds itself (``ANALYTICS_METRICS_EXPORTERS``, or
``OTEL_METRICS_EXPORTER`` with no provider installed): a meter provider it joins (the app's, the
agent's) gets the same measurements through the SDK's instruments, as any instrumentation's.
``tests/test_metrics.py`` checks that both give the same points.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.metrics import Histogram as HistogramInstrument
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from ._version import __version__

SCOPE = "otel_analytics"


class HistogramSpec:
    """One histogram's name, unit, description and bucket boundaries."""

    __slots__ = ("bounds", "description", "name", "unit")

    def __init__(self, name: str, unit: str, description: str, bounds: Sequence[float]) -> None:
        self.name, self.unit, self.description, self.bounds = name, unit, description, tuple(bounds)


class _Point:
    """A histogram point being aggregated: count, sum, min, max, bucket counts."""

    __slots__ = ("buckets", "count", "max", "min", "sum")

    def __init__(self, buckets: int) -> None:
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")
        self.buckets = [0] * buckets


def _count_into(
    buckets: list[int], bounds: Sequence[float], values: Sequence[float], lowest: float, highest: float
) -> None:
    """Add to each bucket the values in it (bucket ``i``: above ``bounds[i-1]``, up to
    ``bounds[i]``, as the SDK counts). ``lowest`` and ``highest``: the least and the greatest of
    the values. When they share a bucket, all the values are in it (the times between a fast
    stream's chunks, a series' like prompts: two searches); else the values are sorted once and
    each bound looked up in them, in C, so a bucket costs one search whatever their number."""
    bucket = bisect.bisect_left(bounds, lowest)
    if bucket == bisect.bisect_left(bounds, highest):
        buckets[bucket] += len(values)
        return
    ordered = sorted(values)
    below = 0
    for bucket, bound in enumerate(bounds):
        upto = bisect.bisect_right(ordered, bound)
        if upto != below:
            buckets[bucket] += upto - below
            below = upto
        if upto == len(ordered):
            return
    buckets[len(bounds)] += len(ordered) - below


class Aggregation:
    """The points of every histogram, for one consumer (an exporter: cumulative, or delta)."""

    def __init__(self, specs: Sequence[HistogramSpec], *, delta: bool) -> None:
        self.delta = delta
        self._specs = specs
        self._points: list[dict[tuple[Any, ...], _Point]] = [{} for _ in specs]
        self._bounds_ns = [tuple(round(bound * 1e9) for bound in spec.bounds) for spec in specs]
        self._start_ns = time.time_ns()

    def add(self, index: int, key: tuple[Any, ...], values: Sequence[float]) -> None:
        """Measurements of one series: summed, bounded and counted into buckets in C-level loops."""
        points = self._points[index]
        point = points.get(key)
        if point is None:
            point = points[key] = _Point(len(self._specs[index].bounds) + 1)
        point.count += len(values)
        point.sum += sum(values)
        lowest, highest = min(values), max(values)
        if lowest < point.min:
            point.min = lowest
        if highest > point.max:
            point.max = highest
        _count_into(point.buckets, self._specs[index].bounds, values, lowest, highest)

    def add_gaps(self, index: int, key: tuple[Any, ...], gaps: Sequence[int]) -> None:
        """:meth:`add` of times between chunks, ``gaps`` in ns (any number of streams' at once),
        measured in seconds: bucketed in nanoseconds (the boundaries are whole ones), in C-level
        loops."""
        points = self._points[index]
        point = points.get(key)
        if point is None:
            point = points[key] = _Point(len(self._specs[index].bounds) + 1)
        lowest_ns = min(gaps)
        if lowest_ns < 0:  # never, from a monotonic clock
            gaps, lowest_ns = [max(gap, 0) for gap in gaps], 0
        point.count += len(gaps)
        point.sum += sum(gaps) / 1e9
        highest_ns = max(gaps)
        point.min = min(point.min, lowest_ns / 1e9)
        point.max = max(point.max, highest_ns / 1e9)
        _count_into(point.buckets, self._bounds_ns[index], gaps, lowest_ns, highest_ns)

    def take(self, attributes_of: Any) -> list[Metric]:
        """The points as SDK metrics (for delta, those since the last call, which starts anew)."""
        now = time.time_ns()
        metrics = []
        temporality = AggregationTemporality.DELTA if self.delta else AggregationTemporality.CUMULATIVE
        for spec, points in zip(self._specs, self._points, strict=True):
            if not points:
                continue
            data_points = [
                HistogramDataPoint(
                    attributes=attributes_of(key),
                    start_time_unix_nano=self._start_ns,
                    time_unix_nano=now,
                    count=point.count,
                    sum=point.sum,
                    bucket_counts=list(point.buckets),
                    explicit_bounds=list(spec.bounds),
                    min=point.min,
                    max=point.max,
                )
                for key, point in points.items()
            ]
            metrics.append(Metric(spec.name, spec.description, spec.unit, Histogram(data_points, temporality)))
        if self.delta:
            self._points = [{} for _ in self._specs]
            self._start_ns = now
        return metrics


class Histograms:
    """Where the recorder's histogram measurements go on this path: into every consumer's
    aggregation, under one lock (the recorder's hand-on and the exports' takes)."""

    def __init__(self, specs: Sequence[HistogramSpec]) -> None:
        self.specs = specs
        self._consumers: list[Aggregation] = []
        self._lock = threading.Lock()
        self.attributes_of: Any = None
        """Set by the recorder: a key's attributes."""

    def consumer(self, *, delta: bool) -> Aggregation:
        with self._lock:
            aggregation = Aggregation(self.specs, delta=delta)
            self._consumers.append(aggregation)
            return aggregation

    def record_many(self, measurements: Iterable[tuple[int, tuple[Any, ...], Sequence[float]]]) -> None:
        """Each ``(histogram, series, values)``: the values (never none) measured in that series."""
        with self._lock:
            consumers = self._consumers
            for index, key, values in measurements:
                for aggregation in consumers:
                    aggregation.add(index, key, values)

    def record_gaps(self, index: int, key: tuple[Any, ...], gaps: Sequence[int]) -> None:
        """One measurement per chunk after a stream's first: the time from the previous chunk's
        end (``gaps``, ns)."""
        with self._lock:
            for aggregation in self._consumers:
                aggregation.add_gaps(index, key, gaps)

    def take(self, aggregation: Aggregation) -> list[Metric]:
        with self._lock:
            return aggregation.take(self.attributes_of) if self.attributes_of is not None else []


def merged(data: MetricsData | None, ours: list[Metric], resource: Resource) -> MetricsData | None:
    """``data`` with ``ours`` added to the ``otel_analytics`` scope of ``resource`` (made if missing)."""
    if not ours:
        return data
    scope = InstrumentationScope(SCOPE, __version__)
    resource_metrics = list(data.resource_metrics) if data is not None else []
    for r, found in enumerate(resource_metrics):
        if found.resource is not resource and found.resource != resource:
            continue
        scopes = list(found.scope_metrics)
        for s, scope_metrics in enumerate(scopes):
            if scope_metrics.scope.name == SCOPE:
                scopes[s] = ScopeMetrics(scope_metrics.scope, [*scope_metrics.metrics, *ours], scope_metrics.schema_url)
                break
        else:
            scopes.append(ScopeMetrics(scope=scope, metrics=ours, schema_url=""))
        resource_metrics[r] = ResourceMetrics(found.resource, scopes, found.schema_url)
        break
    else:
        resource_metrics.append(
            ResourceMetrics(
                resource=resource,
                scope_metrics=[ScopeMetrics(scope=scope, metrics=ours, schema_url="")],
                schema_url="",
            )
        )
    return MetricsData(resource_metrics=resource_metrics)


def prefers_delta(preferred: Mapping[type, AggregationTemporality] | None) -> bool:
    return bool(preferred) and preferred.get(HistogramInstrument) is AggregationTemporality.DELTA  # type: ignore[union-attr]


class WithHistograms(MetricExporter):
    """An exporter that adds the histograms aggregated here to every export of its reader."""

    def __init__(self, inner: MetricExporter, histograms: Histograms, resource: Resource) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality, preferred_aggregation=inner._preferred_aggregation
        )
        self._inner = inner
        self._histograms = histograms
        self._resource = resource
        self._aggregation = histograms.consumer(delta=prefers_delta(inner._preferred_temporality))

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        data = merged(metrics_data, self._histograms.take(self._aggregation), self._resource)
        if data is None:
            return MetricExportResult.SUCCESS
        return self._inner.export(data, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)
