"""Exporters by name: what ``ANALYTICS_EXPORTERS`` (or ``configure(exporters=...)``) can choose.

Each name maps to a factory that builds a ``SpanExporter`` from the settings and the standard
environment. Optional parts are imported only when chosen, and a missing one names the extra to
install. A new exporter is one more entry in ``FACTORIES``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

from ..config import Settings
from ..errors import ConfigurationError


def _console(settings: Settings) -> SpanExporter:
    return ConsoleSpanExporter(service_name=settings.service_name)


def _otlp(settings: Settings) -> SpanExporter:
    """OTLP per the standard variables; ``http/protobuf`` unless ``grpc`` is asked for."""
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip()
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
        or "http/protobuf"
    )
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        except ImportError as exc:
            raise ConfigurationError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the gRPC exporter: pip install 'otel-analytics[grpc]'."
            ) from exc
        return GrpcExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
    except ImportError as exc:
        raise ConfigurationError(
            "The otlp exporter needs the OTLP/HTTP exporter: pip install 'otel-analytics[otlp]'."
        ) from exc
    return HttpExporter()


def _tracker(settings: Settings) -> SpanExporter:
    from .tracker import TrackerSpanExporter

    return TrackerSpanExporter(settings=settings)


FACTORIES: dict[str, Callable[[Settings], SpanExporter]] = {
    "tracker": _tracker,
    "console": _console,
    "otlp": _otlp,
}


def build_exporter(name: str, settings: Settings) -> SpanExporter:
    try:
        factory = FACTORIES[name]
    except KeyError:
        raise ConfigurationError(f"Unknown exporter {name!r}; accepted values: {', '.join(FACTORIES)}.") from None
    return factory(settings)
