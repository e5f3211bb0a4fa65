"""Where otel-analytics' metrics go: the meter provider it joins or builds, and its readers by name.

As on the span side, configuration and not code decides:

- ``ANALYTICS_METRICS_EXPORTERS`` (``otlp``, ``console``, ``prometheus``, ``none``) gives our
  metrics those exporters, on a meter provider of their own (installed globally when none is,
  else private: an app's own metrics are never exported twice).
- Else an SDK meter provider already installed (by the app, or by ``opentelemetry-instrument``
  from ``OTEL_METRICS_EXPORTER``) is joined: its readers export our metrics with the rest.
- Else ``OTEL_METRICS_EXPORTER`` names the exporters of a provider built and installed here.
- Else there is nothing to export to, and no metric is recorded (they would cost and go nowhere).

The readers honour the standard variables: ``OTEL_METRIC_EXPORT_INTERVAL`` and
``..._TIMEOUT`` (the periodic reader reads them), ``OTEL_EXPORTER_OTLP_METRICS_*`` (the OTLP
exporter reads them, temporality included; the console exporter is given the same temporality),
``OTEL_EXPORTER_PROMETHEUS_HOST`` / ``_PORT`` (default ``localhost:9464``, ``/metrics``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, ObservableCounter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

from ..errors import ConfigurationError
from ..metrics_export import Histograms, WithHistograms, merged
from ..settings import Settings, parse_metrics_exporters
from .otlp import otlp_exporter

_logger = logging.getLogger("otel_analytics")
_OTEL_ALIASES = {"otlp_proto_http": "otlp", "otlp_proto_grpc": "otlp"}


@dataclass(frozen=True)
class MeterSetup:
    """The provider the metrics are recorded into, and whether this configuration owns it."""

    provider: MeterProvider
    owned: bool
    exporters: tuple[str, ...]
    closers: tuple[Callable[[], None], ...] = field(default=())
    """What to stop with the provider (the Prometheus exporter's HTTP server)."""
    histograms: Histograms | None = None
    """The histograms aggregated by otel-analytics, which this provider's readers add to their
    exports (``None``: through the SDK's instruments, as on a provider joined)."""


def meter_setup(settings: Settings, resource: Resource, given: MeterProvider | None = None) -> MeterSetup | None:
    """Join or build the meter provider for ``settings`` (``given``: join that one); ``None``: no
    metrics are recorded."""
    if not settings.enabled or not settings.metrics:
        return None
    if given is not None:
        return MeterSetup(given, owned=False, exporters=())
    installed = metrics.get_meter_provider()
    names = settings.metrics_exporters
    if names is not None:
        return _built(names, resource, install=_unset(installed)) if names else None
    if isinstance(installed, MeterProvider):
        # Not one shut down by an earlier configuration, nor one nothing reads (the agent's, with
        # OTEL_METRICS_EXPORTER=none): metrics there would cost and go nowhere.
        return MeterSetup(installed, owned=False, exporters=()) if joinable(installed) else None
    raw = os.environ.get("OTEL_METRICS_EXPORTER", "").strip()
    if not raw:
        return None
    aliased = ",".join(_OTEL_ALIASES.get(item.strip().lower(), item) for item in raw.split(","))
    names = parse_metrics_exporters("OTEL_METRICS_EXPORTER", aliased)
    return _built(names, resource, install=_unset(metrics.get_meter_provider())) if names else None


def joinable(provider: MeterProvider) -> bool:
    """Whether a meter provider is live and read by something (read from the SDK's internals
    where it keeps them: if they moved, it is taken as both)."""
    if getattr(provider, "_shutdown", False):
        return False
    storages = getattr(getattr(provider, "_measurement_consumer", None), "_reader_storages", None)
    return storages is None or len(storages) > 0


def _unset(provider: object) -> bool:
    """Whether no meter provider is installed yet (the API's stand-in is there): one can be."""
    try:
        from opentelemetry.metrics._internal import _ProxyMeterProvider
    except ImportError:  # the API moved it: installing is left to the app
        return False
    return isinstance(provider, _ProxyMeterProvider)


def _built(names: tuple[str, ...], resource: Resource, *, install: bool) -> MeterSetup:
    from ..metrics import SPECS

    histograms = Histograms(SPECS)
    readers: list[MetricReader] = []
    closers: list[Callable[[], None]] = []
    try:
        for name in names:
            if name == "prometheus":
                prometheus, close = _prometheus(histograms, resource)
                readers.append(prometheus)
                closers.append(close)
            else:
                exporter = _otlp() if name == "otlp" else ConsoleMetricExporter(preferred_temporality=_temporality())
                readers.append(periodic_reader(exporter, histograms, resource))
    except BaseException:
        for close in closers:
            close()
        raise
    provider = MeterProvider(metric_readers=readers, resource=resource, shutdown_on_exit=False)
    if install:
        metrics.set_meter_provider(provider)
    return MeterSetup(provider, owned=True, exporters=names, closers=tuple(closers), histograms=histograms)


def periodic_reader(
    exporter: MetricExporter, histograms: Histograms, resource: Resource, **options: Any
) -> PeriodicExportingMetricReader:
    """The periodic reader of a built provider: its exports carry the histograms aggregated here
    (``options``: the reader's, ``export_interval_millis`` and the like; else the environment's)."""
    return PeriodicExportingMetricReader(WithHistograms(exporter, histograms, resource), **options)


def _otlp() -> MetricExporter:
    exporter: MetricExporter = otlp_exporter("metrics")
    return exporter


def _temporality() -> dict[type, AggregationTemporality]:
    """The console exporter's temporality: what ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE``
    asks of the OTLP one (``delta``: counters and histograms by delta; ``lowmemory``: synchronous
    counters and histograms by delta)."""
    chosen = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "").strip().lower()
    delta = AggregationTemporality.DELTA
    if chosen == "delta":
        return {Counter: delta, Histogram: delta, ObservableCounter: delta}
    if chosen == "lowmemory":
        return {Counter: delta, Histogram: delta}
    return {}


def _prometheus(histograms: Histograms, resource: Resource) -> tuple[MetricReader, Callable[[], None]]:
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server
    except ImportError as exc:
        raise ConfigurationError(
            "The prometheus metrics exporter needs its package: pip install 'otel-analytics[prometheus]'."
        ) from exc
    host = os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "").strip() or "localhost"
    raw_port = os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "").strip() or "9464"
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise ConfigurationError(
            f"OTEL_EXPORTER_PROMETHEUS_PORT={raw_port!r} is not valid; accepted values: a port from 1 to 65535."
        )
    try:
        server, thread = start_http_server(port=int(raw_port), addr=host)
    except OSError as exc:
        raise ConfigurationError(
            f"The prometheus exporter cannot listen on {host}:{raw_port} ({exc}); set OTEL_EXPORTER_PROMETHEUS_PORT."
        ) from exc
    _logger.info("otel-analytics: Prometheus metrics at http://%s:%s/metrics", host, raw_port)

    def close() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    class WithHistogramsReader(PrometheusMetricReader):
        """Prometheus' reader, given the histograms aggregated by otel-analytics with each collection."""

        def __init__(self) -> None:
            super().__init__()
            self._aggregation = histograms.consumer(delta=False)

        def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
            data = merged(metrics_data, histograms.take(self._aggregation), resource)
            if data is not None:
                super()._receive_metrics(data, timeout_millis, **kwargs)

    return WithHistogramsReader(), close
