"""The tracker's processor: spans are mapped in batches right away, and what waits is bytes.

The SDK's ``BatchSpanProcessor`` holds spans until they are sent. A span waiting for a slow or
absent tracker is ~1 KB of objects the garbage collector keeps walking; its tracker call,
encoded, is ~0.6 KB of bytes it never looks at. So this processor works in two stages:

1. The SDK's own ``BatchSpanProcessor`` (cheap ``on_end``, its worker, queue, fork handling and
   ``OTEL_BSP_*`` settings) hands small batches of spans to :class:`_Encoder`, which maps and
   encodes them at once, in a batch (about half the cost of mapping each span as it ends, on the
   app's thread: that was measured and not kept), and puts the calls in a backlog.
2. :class:`_Sender`, a thread of its own, sends the backlog in batches through the exporter's
   usual path (batch route, session starts, retries within the budget), while the first stage
   keeps the span queue short.

The backlog is bounded (oldest pushed out first, counted); a burst or an outage waits there.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from .._fork import rebuild_in_forked_child
from .._guard import report_internal_error
from .tracker import EncodedCall, TrackerSpanExporter

ENCODE_BATCH = 512
"""Spans mapped per hand-over from the span queue: small, so spans never wait long as objects."""


class _Sender:
    """Sends a bounded backlog of encoded calls in batches, on its own daemon thread."""

    def __init__(self, exporter: TrackerSpanExporter, *, capacity: int, batch: int, delay_s: float) -> None:
        self._exporter = exporter
        self._stats = exporter.stats
        self._capacity = capacity
        self._batch = batch
        self._delay_s = delay_s
        self._start()
        rebuild_in_forked_child(self._start)  # a forked child: an empty backlog, a live thread

    def _start(self) -> None:
        self._backlog: collections.deque[EncodedCall] = collections.deque()
        self._condition = threading.Condition()
        self._flushing = 0
        self._stopping = False
        self._stats.backlog = self._stats.sending = 0
        self._thread = threading.Thread(target=self._run, name="otel-analytics-tracker-sender", daemon=True)
        self._thread.start()

    def put(self, calls: list[EncodedCall]) -> None:
        with self._condition:
            backlog = self._backlog
            was_empty = not backlog
            backlog.extend(calls)
            over = len(backlog) - self._capacity
            if over > 0:
                for _ in range(over):
                    backlog.popleft()
                self._stats.overflowed += over
                self._stats.undelivered_interactions += over  # mostly interactions: what the report says
                self._stats.last_problem = "the queue was full: the oldest were dropped"
            self._stats.backlog = len(backlog)
            if was_empty or len(backlog) >= self._batch:  # starts the delay, or sends a full batch
                self._condition.notify_all()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._backlog and not self._stopping:
                    self._condition.wait()
                # Something waits: a partial batch gets the schedule delay to fill up.
                deadline = time.monotonic() + self._delay_s
                while len(self._backlog) < self._batch and not self._flushing and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._condition.wait(left)
                if self._stopping and not self._backlog:
                    return
                count = min(self._batch, len(self._backlog))
                calls = [self._backlog.popleft() for _ in range(count)]
                self._stats.backlog = len(self._backlog)
                self._stats.sending = count  # a flush waits for these too
            try:
                if calls:
                    self._exporter.send(calls)  # never raises: failures are counted and logged there
            except Exception as error:  # a bug of ours: logged once, and the thread goes on
                report_internal_error("tracker sender", error)
            finally:
                with self._condition:
                    self._stats.sending = 0
                    self._condition.notify_all()

    def flush(self, timeout_s: float) -> bool:
        """Wait until the backlog is sent (or ``timeout_s`` passes); ``True`` when it was."""
        deadline = time.monotonic() + timeout_s
        with self._condition:
            self._flushing += 1
            self._condition.notify_all()
            try:
                while self._backlog or self._stats.sending:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._thread.is_alive():
                        return False
                    self._condition.wait(left)
                return True
            finally:
                self._flushing -= 1

    def shutdown(self, timeout_s: float) -> None:
        """Send what is waiting (within ``timeout_s``), then stop the exporter; the rest is dropped."""
        self.flush(timeout_s)
        with self._condition:
            self._stopping = True
            # Not sent in time: counted (and reported) as the exporter counts what it gives up.
            self._exporter.count_not_sent(list(self._backlog), "not sent before shutdown")
            self._backlog.clear()
            self._stats.backlog = 0
            self._condition.notify_all()
        self._exporter.shutdown()  # a request still in flight gives up its retries, and is counted
        self._thread.join(1.0)


class _Encoder(SpanExporter):
    """The first stage's exporter: maps a batch of spans and puts the calls in the backlog."""

    def __init__(self, exporter: TrackerSpanExporter, sender: _Sender) -> None:
        self._exporter = exporter
        self._sender = sender

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._exporter.stats.received += len(spans)
        calls = self._exporter.encode_all(spans, queued=True)
        if calls:
            self._sender.put(calls)
        return SpanExportResult.SUCCESS

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._sender.shutdown(timeout_millis / 1000)  # what the SDK's shutdown has left of its time


class TrackerBatchProcessor(SpanProcessor):
    """The tracker exporter's processor: a span queue, mapped in batches into a backlog of calls.

    ``max_queue_size`` bounds the backlog (how many interactions may wait to be sent);
    ``span_queue_size`` the spans waiting to be mapped.
    """

    def __init__(
        self,
        exporter: TrackerSpanExporter,
        *,
        max_queue_size: int,
        max_export_batch_size: int,
        schedule_delay_millis: float,
        span_queue_size: int,
    ) -> None:
        self._stats = exporter.stats
        self._sender = _Sender(
            exporter, capacity=max_queue_size, batch=max_export_batch_size, delay_s=schedule_delay_millis / 1000
        )
        self._spans = BatchSpanProcessor(
            _Encoder(exporter, self._sender),
            max_queue_size=span_queue_size,
            max_export_batch_size=min(ENCODE_BATCH, span_queue_size),
            schedule_delay_millis=schedule_delay_millis,
        )
        self._on_end = self._spans.on_end

    # No on_start: the batch processor inside acts only on end, and a wrapper that forwarded
    # on_start would keep spans that are over already from skipping the live span.

    def on_end(self, span: ReadableSpan) -> None:
        self._stats.ended += 1  # an int add under the GIL: exact enough for a counter
        self._on_end(span)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        mapped = self._spans.force_flush(timeout_millis)
        return self._sender.flush(max(deadline - time.monotonic(), 0.0)) and mapped

    def shutdown(self) -> None:
        self._spans.shutdown()  # type: ignore[no-untyped-call]  # maps what is queued, then stops the sender
