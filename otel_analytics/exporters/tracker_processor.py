"""The tracker's batch processor: spans are encoded when they end, and the queue holds bytes.

The SDK's ``BatchSpanProcessor`` queues ``ReadableSpan`` objects (about 1.1 KB each for an
interaction, with dicts the garbage collector walks again and again while they wait) and leaves all the mapping to its
worker thread, which competes with the app for the interpreter lock exactly when the app is
busiest. This one is that processor (same worker, queue, flush, shutdown, fork handling and
``OTEL_BSP_*`` settings), except that ``on_end`` maps the span onto its tracker call and queues
the encoded :class:`~otel_analytics.exporters.tracker.EncodedCall`: about 0.6 KB of bytes and
strings, half a queued span, with nothing in it for the collector to walk. So the queue can be
long (32,768 calls, ~20 MB when full) and a burst is held instead of dropped, and the worker
only joins bytes and sends them. The mapping (10 to 18 µs here) moves to the thread that
ends the span; the process's CPU per interaction stays the same (it ran on the worker, under
the same interpreter lock, before).

It reaches into the SDK's processor for its generic batching core (``_batch_processor``); an
SDK without one gets the plain behaviour (spans queued, mapped by the exporter), never an error.
"""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from .._guard import report_internal_error
from .tracker import TrackerSpanExporter


class TrackerBatchProcessor(BatchSpanProcessor):
    """A ``BatchSpanProcessor`` for :class:`TrackerSpanExporter` that queues encoded calls."""

    def __init__(
        self,
        exporter: TrackerSpanExporter,
        *,
        max_queue_size: int,
        schedule_delay_millis: float,
        max_export_batch_size: int,
    ) -> None:
        super().__init__(
            exporter,
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_millis,
            max_export_batch_size=max_export_batch_size,
        )
        self._encoder = exporter
        self._stats = exporter.stats
        batcher = getattr(self, "_batch_processor", None)
        self._emit = getattr(batcher, "emit", None)

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if not (context and context.trace_flags.sampled):
            return
        emit = self._emit
        if emit is None:  # an SDK without the batching core we know: the exporter maps at export
            self._stats.ended += 1
            super().on_end(span)
            return
        try:
            call = self._encoder.encode(span)
        except Exception:  # a malformed span: counted and logged once, never raised into the app
            self._encoder.count_unmappable()
            return
        if call is not None:
            self._stats.ended += 1  # an int add under the GIL: exact enough for a counter
            try:
                emit(call)
            except Exception as error:  # an SDK whose private core changed shape: never the app's problem
                report_internal_error("tracker processor", error)
