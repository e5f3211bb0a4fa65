"""A benchmark server: ``python -m bench.serve VARIANT PORT [FIRST_CHUNK_DELAY_S]``.

VARIANT is ``bare`` (the app alone), ``stock`` (contrib's OpenTelemetryMiddleware, send/receive
spans off), ``analytics`` (``AnalyticsMiddleware``, which adds that server span itself) or ``layer``
(the stock middleware around ``AnalyticsMiddleware``: an app instrumented already). Spans go to a
batch processor with an exporter that does nothing.
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_analytics as oa
from bench.common import NullExporter, chat_app


def build(variant: str, delay: float) -> Any:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NullExporter()))
    oa.configure(tracer_provider=provider, exporters=())
    app = chat_app(delay)
    if variant == "stock":
        return OpenTelemetryMiddleware(app, exclude_spans=["receive", "send"], tracer_provider=provider)
    if variant == "analytics":
        return oa.AnalyticsMiddleware(app)
    if variant == "layer":
        return OpenTelemetryMiddleware(
            oa.AnalyticsMiddleware(app), exclude_spans=["receive", "send"], tracer_provider=provider
        )
    return app


if __name__ == "__main__":
    variant, port = sys.argv[1], int(sys.argv[2])
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    uvicorn.run(
        build(variant, delay),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="asyncio",
        http="h11",
    )
