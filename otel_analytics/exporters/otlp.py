"""The OTLP exporter of one signal, its protocol chosen by the standard variables
(``OTEL_EXPORTER_OTLP_{SIGNAL}_PROTOCOL``, then ``OTEL_EXPORTER_OTLP_PROTOCOL``; ``http/protobuf``
unless ``grpc`` is asked for). Every other setting (endpoint, headers, compression, timeout,
certificates) the exporter reads itself."""

from __future__ import annotations

import importlib
import os
from typing import Any, Literal

from ..errors import ConfigurationError
from ..settings import OTLP_PROTOCOLS

_EXPORTERS = {
    ("traces", "http/protobuf"): ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "OTLPSpanExporter"),
    ("traces", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "OTLPSpanExporter"),
    ("metrics", "http/protobuf"): ("opentelemetry.exporter.otlp.proto.http.metric_exporter", "OTLPMetricExporter"),
    ("metrics", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc.metric_exporter", "OTLPMetricExporter"),
}
_EXTRAS = {"http/protobuf": ("the OTLP/HTTP exporter", "otlp"), "grpc": ("the gRPC exporter", "grpc")}


def otlp_exporter(signal: Literal["traces", "metrics"]) -> Any:
    """A new OTLP exporter for ``signal``; a protocol not supported, or whose exporter is not
    installed, is a ``ConfigurationError`` that says what to do."""
    variable = f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"
    protocol = os.environ.get(variable, "").strip()
    if not protocol:
        variable, protocol = "OTEL_EXPORTER_OTLP_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
    protocol = protocol or "http/protobuf"
    if protocol not in OTLP_PROTOCOLS:
        raise ConfigurationError(
            f"{variable}={protocol!r} is not supported; accepted values: {', '.join(OTLP_PROTOCOLS)}."
        )
    module, name = _EXPORTERS[signal, protocol]
    try:
        exporter_class = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        what, extra = _EXTRAS[protocol]
        raise ConfigurationError(
            f"{variable}={protocol} needs {what}: pip install 'otel-analytics[{extra}]'."
            if protocol == "grpc"
            else f"The otlp exporter needs {what}: pip install 'otel-analytics[{extra}]'."
        ) from exc
    return exporter_class()
