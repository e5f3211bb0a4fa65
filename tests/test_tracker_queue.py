"""The tracker's batch processor: its queue holds a burst (and an outage) in bounded memory."""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanContext, TraceFlags

import otel_analytics as oa
from otel_analytics.exporters.tracker import TrackerSpanExporter
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


def test_a_burst_of_20_000_interactions_is_held_through_an_outage(
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


def test_a_queued_interaction_holds_about_a_kilobyte(clean_env: pytest.MonkeyPatch, fake_tracker: FakeTracker) -> None:
    """A full queue (32,768) stays near 40 MB: each queued interaction is one span, ~1.1 KB."""
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
    assert 500 < per_interaction < 1600  # held (not dropped), and small


def test_a_span_that_cannot_be_mapped_is_counted_never_raised(fake_tracker: FakeTracker) -> None:
    exporter = TrackerSpanExporter(url=fake_tracker.url)
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
        exporter.export([span])
    finally:
        exporter.shutdown()
    assert exporter.stats.failed == 1 and exporter.stats.sent == 0
