"""The tracker's batch processor: spans are encoded when they end, so its queue is small and long."""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanContext, TraceFlags

import otel_analytics as oa
from otel_analytics.exporters import build_processor
from otel_analytics.exporters.tracker import TrackerSpanExporter
from otel_analytics.exporters.tracker_processor import TrackerBatchProcessor
from tests.fake_tracker import FakeTracker


def _record(n: int) -> None:
    oa.track_interaction(
        session_id=f"conv-{n % 20}",
        user_id="u",
        model_name="gpt-4o-mini",
        prompt_tokens=1200,
        completion_tokens=300,
        compute_duration_ms=900,
    )


def _wait_for(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_burst_past_the_sdk_default_queue_is_held_through_an_outage(
    clean_env: pytest.MonkeyPatch, fake_tracker: FakeTracker
) -> None:
    """20,000 interactions arrive while the tracker answers 503: all are held, then all delivered."""
    fake_tracker.fail_until = time.monotonic() + 600  # down until the burst is recorded
    handle = oa.configure(
        tracer_provider=TracerProvider(), exporters="tracker", tracker_url=fake_tracker.url, retry_budget_s=60
    )
    try:
        for n in range(20_000):
            _record(n)
        fake_tracker.fail_until = 0.0
        assert handle.force_flush(timeout=60)
        _wait_for(lambda: len(fake_tracker.interactions) >= 20_000, 30)
        stats = handle.stats()["tracker"]
    finally:
        handle.shutdown(timeout=5)
    span_ids = {item["metadata"]["span_id"] for item in fake_tracker.interactions}
    assert len(span_ids) == 20_000, stats
    assert stats["dropped"] == 0 and stats["failed"] == 0 and stats.get("queued_or_lost", 0) == 0


def test_a_queued_interaction_holds_well_under_a_kilobyte(
    clean_env: pytest.MonkeyPatch, fake_tracker: FakeTracker
) -> None:
    """What waits in the queue is the encoded call (~0.6 KB): a queued ``ReadableSpan`` holds ~1.1 KB,
    and orjson's own bytes keep a 4 KB buffer each."""
    fake_tracker.fail_until = time.monotonic() + 600
    clean_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # nothing leaves the queue while measured
    handle = oa.configure(
        tracer_provider=TracerProvider(), exporters="tracker", tracker_url=fake_tracker.url, retry_budget_s=1
    )
    try:
        for n in range(200):  # sessions, prices, caches: warm
            _record(n)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            count = 1500  # under one batch: the worker is not woken
            for n in range(count):
                _record(n)
            gc.collect()
            per_interaction = (tracemalloc.get_traced_memory()[0] - before) / count
        finally:
            tracemalloc.stop()
    finally:
        handle.shutdown(timeout=1)
    assert 200 < per_interaction < 800  # held (not dropped), and small


def test_a_span_that_cannot_be_mapped_is_counted_never_raised(fake_tracker: FakeTracker) -> None:
    exporter = TrackerSpanExporter(url=fake_tracker.url)
    processor = build_processor("tracker", exporter)
    assert isinstance(processor, TrackerBatchProcessor)
    context = SpanContext(trace_id=1, span_id=1, is_remote=False, trace_flags=TraceFlags(1))
    span = ReadableSpan(
        name="chat",
        context=context,
        attributes={"analytics.interaction.type": "chat"},
        start_time=1,
        end_time=2,
        status=None,  # type: ignore[arg-type]  # malformed: a status is required
    )
    try:
        processor.on_end(span)
    finally:
        processor.shutdown()
    assert exporter.stats.failed == 1 and exporter.stats.sent == 0


def test_without_the_sdk_batching_core_spans_are_queued_and_mapped_at_export(
    fake_tracker: FakeTracker,
) -> None:
    """An SDK whose processor lacks the generic core this one feeds: the plain behaviour."""
    exporter = TrackerSpanExporter(url=fake_tracker.url)
    processor = TrackerBatchProcessor(exporter, max_queue_size=100, max_export_batch_size=10, schedule_delay_millis=10)
    processor._emit = None
    provider = TracerProvider()
    provider.add_span_processor(processor)
    handle = oa.configure(tracer_provider=provider, exporters="none")
    try:
        for n in range(5):
            _record(n)
        assert processor.force_flush()
    finally:
        handle.shutdown(timeout=1)
        processor.shutdown()
    assert len(fake_tracker.interactions) == 5
    assert exporter.stats.as_dict()["queued_or_lost"] == 0


def test_a_failing_queue_is_reported_never_raised_into_the_app(
    fake_tracker: FakeTracker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The processor feeds a private core of the SDK's: if its shape changes, the app never sees it."""
    from otel_analytics import _guard

    monkeypatch.setattr(_guard, "RAISE_UNDER_PYTEST", False)
    exporter = TrackerSpanExporter(url=fake_tracker.url)
    processor = TrackerBatchProcessor(exporter, max_queue_size=100, max_export_batch_size=10, schedule_delay_millis=10)

    def changed(item: object, extra: object) -> None:
        raise AssertionError("unreachable")

    processor._emit = changed  # type: ignore[assignment]
    provider = TracerProvider()
    provider.add_span_processor(processor)
    handle = oa.configure(tracer_provider=provider, exporters="none")
    try:
        _record(1)  # does not raise
    finally:
        handle.shutdown(timeout=1)
        processor.shutdown()
    assert "internal error in tracker processor" in caplog.text
    assert exporter.stats.as_dict()["queued_or_lost"] == 1
