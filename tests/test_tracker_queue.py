"""The tracker's processor: what waits for the tracker (a burst, an outage) is small and bounded."""

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
from otel_analytics.exporters.tracker_processor import ENCODE_BATCH
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


def _exporter(handle: oa.AnalyticsHandle) -> TrackerSpanExporter:
    exporter = handle._exporters["tracker"]
    assert isinstance(exporter, TrackerSpanExporter)
    return exporter


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


def test_a_trickle_is_sent_within_the_schedule_delay(clean_env: pytest.MonkeyPatch, fake_tracker: FakeTracker) -> None:
    """A quiet chat backend (a few interactions, far under a batch) gets them sent without a flush."""
    clean_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    handle = oa.configure(tracer_provider=TracerProvider(), exporters="tracker", tracker_url=fake_tracker.url)
    try:
        for n in range(3):
            _record(n)
        _wait_for(lambda: len(fake_tracker.interactions) == 3, 10)
        assert len(fake_tracker.interactions) == 3
        _record(3)  # and again, once the sender has gone back to waiting
        _wait_for(lambda: len(fake_tracker.interactions) == 4, 10)
        assert len(fake_tracker.interactions) == 4
    finally:
        handle.shutdown(timeout=2)


def test_a_waiting_interaction_holds_well_under_a_kilobyte(
    clean_env: pytest.MonkeyPatch, fake_tracker: FakeTracker
) -> None:
    """What waits for the tracker is the encoded call (~0.6 KB), not the span (~1 KB of objects)."""
    fake_tracker.fail_until = time.monotonic() + 600
    clean_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # nothing is sent while measured
    handle = oa.configure(
        tracer_provider=TracerProvider(), exporters="tracker", tracker_url=fake_tracker.url, retry_budget_s=1
    )

    try:
        for n in range(ENCODE_BATCH):  # sessions, prices, caches: warm; one batch mapped
            _record(n)
        # In the backlog, not only taken from the span queue (received is counted before mapping).
        _wait_for(lambda: _exporter(handle).stats.backlog == ENCODE_BATCH, 10)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            count = 2 * ENCODE_BATCH  # with the warm-up, under one send batch (2,000): all of it waits
            for n in range(count):
                _record(n)
            _wait_for(lambda: _exporter(handle).stats.backlog == 3 * ENCODE_BATCH, 10)
            gc.collect()
            per_interaction = (tracemalloc.get_traced_memory()[0] - before) / count
        finally:
            tracemalloc.stop()
        assert _exporter(handle).stats.backlog == 3 * ENCODE_BATCH  # all of them waiting, encoded
    finally:
        handle.shutdown(timeout=1)
    assert 200 < per_interaction < 900


def test_forked_worker_sends_its_own_interactions(clean_env: pytest.MonkeyPatch, fake_tracker: FakeTracker) -> None:
    """A worker forked after ``configure()`` (gunicorn's pre-fork model) sends from its own threads
    (the parent's do not exist in the child, and a lock they held would be held forever)."""
    import os
    import signal

    handle = oa.configure(tracer_provider=TracerProvider(), exporters="tracker", tracker_url=fake_tracker.url)
    for n in range(3):  # the parent's sending threads exist (and wait for work) when it forks
        oa.track_interaction(session_id=f"conv-parent-{n}", user_id="u", model_name="gpt-4o-mini")
    assert handle.force_flush(timeout=10)
    pid = os.fork()
    if pid == 0:  # the child: three sessions (their starts go out concurrently), flush, out
        code = 1
        try:
            for n in range(3):
                oa.track_interaction(session_id=f"conv-forked-{n}", user_id="u", model_name="gpt-4o-mini")
            code = 0 if handle.force_flush(timeout=10) else 2
        finally:
            os._exit(code)
    try:
        deadline = time.monotonic() + 30
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if done[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked worker hung")
    finally:
        handle.shutdown(timeout=2)
    assert os.waitstatus_to_exitcode(done[1]) == 0
    forked = sorted(item["session_id"] for item in fake_tracker.interactions if "forked" in item["session_id"])
    assert forked == ["conv-forked-0", "conv-forked-1", "conv-forked-2"]


def test_a_span_that_cannot_be_mapped_is_counted_never_raised(fake_tracker: FakeTracker) -> None:
    exporter = TrackerSpanExporter(url=fake_tracker.url)
    processor = build_processor("tracker", exporter)
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
        assert processor.force_flush(5_000)
    finally:
        processor.shutdown()
    assert exporter.stats.failed == 1 and exporter.stats.sent == 0


def test_the_sender_survives_an_unexpected_error(
    clean_env: pytest.MonkeyPatch, fake_tracker: FakeTracker, caplog: pytest.LogCaptureFixture
) -> None:
    from otel_analytics import _guard

    clean_env.setattr(_guard, "RAISE_UNDER_PYTEST", False)
    clean_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    handle = oa.configure(tracer_provider=TracerProvider(), exporters="tracker", tracker_url=fake_tracker.url)
    exporter = _exporter(handle)
    real_send = exporter.send
    failures: list[object] = []

    def broken_once(calls: object) -> object:
        if not failures:
            failures.append(calls)
            raise RuntimeError("a bug")
        return real_send(calls)  # type: ignore[arg-type]

    clean_env.setattr(exporter, "send", broken_once)
    try:
        _record(1)
        _wait_for(lambda: bool(failures), 10)
        _record(2)
        assert handle.force_flush(timeout=10)
    finally:
        handle.shutdown(timeout=2)
    assert "internal error in tracker sender" in caplog.text
    assert [item["session_id"] for item in fake_tracker.interactions] == ["conv-2"]


def test_what_a_down_tracker_holds_is_counted_as_sending(
    clean_env: pytest.MonkeyPatch, fake_tracker: FakeTracker
) -> None:
    """A batch taken from the queue and being retried is counted somewhere: in ``sending``."""
    clean_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    fake_tracker.fail_until = time.monotonic() + 600
    handle = oa.configure(
        tracer_provider=TracerProvider(), exporters="tracker", tracker_url=fake_tracker.url, retry_budget_s=60
    )
    try:
        for n in range(3):
            _record(n)
        _wait_for(lambda: handle.stats()["tracker"]["retried"] >= 1, 10)
        stats = handle.stats()["tracker"]
        assert stats["sent"] == stats["dropped"] == stats["failed"] == 0, stats
        # All three counted: in the batch being retried, or (taken in two batches) still queued.
        assert stats["sending"] >= 1 and stats["sending"] + stats["queued_or_lost"] == 3, stats
        fake_tracker.fail_until = 0.0
        assert handle.force_flush(timeout=30)
        stats = handle.stats()["tracker"]
        assert stats["sending"] == 0 and stats["sent"] >= 3, stats
    finally:
        handle.shutdown(timeout=5)
