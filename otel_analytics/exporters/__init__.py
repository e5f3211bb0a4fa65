"""Exporters by name: what ``ANALYTICS_EXPORTERS`` (or ``configure(exporters=...)``) can choose.

Each name maps to a factory that builds a ``SpanExporter`` from the settings and the standard
environment. Optional parts are imported only when chosen, and a missing one names the extra to
install. A new exporter is one more entry in ``FACTORIES``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from ..errors import ConfigurationError
from ..settings import Settings
from .otlp import otlp_exporter


def _console(settings: Settings) -> SpanExporter:
    return ConsoleSpanExporter(service_name=settings.service_name)


def _otlp(settings: Settings) -> SpanExporter:
    exporter: SpanExporter = otlp_exporter("traces")
    return exporter


def _tracker(settings: Settings) -> SpanExporter:
    from .tracker import TrackerSpanExporter

    return TrackerSpanExporter(settings=settings)


FACTORIES: dict[str, Callable[[Settings], SpanExporter]] = {
    "tracker": _tracker,
    "console": _console,
    "otlp": _otlp,
}


# The tracker's processor, unless OTEL_BSP_* say otherwise: up to 32,768 interactions wait as
# encoded calls (~0.6 KB each: ~20 MB when full, during an outage), mapped 512 at a time from a
# span queue of at most 8,192, and are sent in batches of 2,000 (twenty batch requests at once;
# a send waits one tracker round trip, so the batch caps the rate: 40k/s with a tracker
# answering in 50 ms). That holds the burst of 15k interactions/s for 10 s on a 2-core machine,
# where the exporter falls behind while the app uses the CPU (8,192 spans dropped 14-22 % of it).
TRACKER_QUEUE_SIZE = 32_768
TRACKER_SPAN_QUEUE_SIZE = 8192
TRACKER_BATCH_SIZE = 2000
TRACKER_SCHEDULE_DELAY_MS = 500


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() else default


def build_processor(name: str, exporter: SpanExporter) -> SpanProcessor:
    """The batch processor for one exporter (each exporter has its own)."""
    if name != "tracker":
        return BatchSpanProcessor(exporter)
    from .tracker import TrackerSpanExporter
    from .tracker_processor import TrackerBatchProcessor

    queue = _env_int("OTEL_BSP_MAX_QUEUE_SIZE", TRACKER_QUEUE_SIZE)
    batch = min(_env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", TRACKER_BATCH_SIZE), queue)
    delay = _env_int("OTEL_BSP_SCHEDULE_DELAY", TRACKER_SCHEDULE_DELAY_MS)
    sdk_logger = logging.getLogger("opentelemetry.sdk._shared_internal")
    if _QUEUE_FULL_FILTER not in sdk_logger.filters:
        sdk_logger.addFilter(_QUEUE_FULL_FILTER)
    if isinstance(exporter, TrackerSpanExporter):
        return TrackerBatchProcessor(
            exporter,
            max_queue_size=queue,
            max_export_batch_size=batch,
            schedule_delay_millis=delay,
            span_queue_size=min(queue, TRACKER_SPAN_QUEUE_SIZE),
        )
    return BatchSpanProcessor(exporter, max_queue_size=queue, max_export_batch_size=batch, schedule_delay_millis=delay)


class _OncePerMinute(logging.Filter):
    """The SDK logs "Queue full, dropping Span." for every span it drops; a tracker outage under
    load would print it thousands of times a second. Once a minute is plenty: the count of what
    was dropped is in ``handle.stats()``."""

    def __init__(self) -> None:
        super().__init__()
        self._last = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Queue full"):
            return True
        now = time.monotonic()
        if now - self._last < 60:
            return False
        self._last = now
        return True


_QUEUE_FULL_FILTER = _OncePerMinute()


def build_exporter(name: str, settings: Settings) -> SpanExporter:
    try:
        factory = FACTORIES[name]
    except KeyError:
        raise ConfigurationError(f"Unknown exporter {name!r}; accepted values: {', '.join(FACTORIES)}.") from None
    return factory(settings)
