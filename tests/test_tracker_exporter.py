"""The tracker exporter against a strict fake of the deployed tracker, with faults."""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider, _Span
from opentelemetry.sdk.trace.export import SpanExportResult

import otel_analytics as oa
from otel_analytics.errors import ConfigurationError
from otel_analytics.exporters.tracker import TrackerSpanExporter
from otel_analytics.testing import CaptureAnalytics
from tests.fake_tracker import FakeTracker, Fault
from tests.helpers import in_threads, nothing_listening


@pytest.fixture
def spans() -> Iterator[CaptureAnalytics]:
    capture = CaptureAnalytics()
    try:
        yield capture
    finally:
        capture.close()


def conversation() -> None:
    began = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    oa.start_session("conv-1", user_id="u1", metadata={"endpoint": "/api/convos"}, start_time=began)
    with oa.session("conv-1", user_id="u1", start=False, end=False):
        with oa.interaction("chat", model="gpt-4o") as it:
            it.record_usage(prompt_tokens=450, completion_tokens=320, cache_read_tokens=100, model="gpt-4o-2024-08-06")
        oa.track_db_operation(read_ops=5, write_ops=2)
        oa.track_api_call(call_count=3, metadata={"tool_name": "weather"})
        oa.track_interaction(type="cost-event", costs={"compute_time_cost_mc": 8400})
    oa.end_session("conv-1")


def exporter(url: str, **kwargs: object) -> TrackerSpanExporter:
    kwargs.setdefault("retry_budget_s", 5.0)
    return TrackerSpanExporter(url=url, **kwargs)  # type: ignore[arg-type]


def finished(capture: CaptureAnalytics) -> list[ReadableSpan]:
    return list(capture.finished())


def test_every_field_lands_as_the_contract_says(spans: CaptureAnalytics, fake_tracker: FakeTracker) -> None:
    conversation()
    tracker = exporter(fake_tracker.url)
    assert tracker.export(finished(spans)) is SpanExportResult.SUCCESS
    tracker.shutdown()
    start = fake_tracker.requests("/v1/track/session/start")[0]
    assert start.answered == 201
    assert start.body == {
        "session_id": "conv-1",
        "user_id": "u1",
        "start_time": "2026-11-29T10:00:00.000Z",
        "metadata": {"endpoint": "/api/convos"},
    }
    assert "authorization" not in start.headers  # no token configured: none sent
    (batch,) = fake_tracker.requests("/v1/track/interaction/batch")
    assert batch.answered == 202
    items = {item["type"]: item for item in batch.body["interactions"]}
    chat = items["chat"]
    assert chat["model_name"] == "gpt-4o-2024-08-06"
    assert (chat["prompt_tokens"], chat["completion_tokens"]) == (450, 320)
    assert chat["metadata"]["cache_read_tokens"] == 100
    assert chat["metadata"]["provider"] == "openai"
    assert "costs" not in chat  # the tracker prices unless told to trust our estimate
    chat_span = next(s for s in finished(spans) if s.name.startswith("chat"))
    assert chat["metadata"]["span_id"] == format(chat_span.context.span_id, "016x")
    assert chat["metadata"]["trace_id"] == format(oa.session_trace_id("conv-1"), "032x")
    assert (items["db"]["db_read_ops"], items["db"]["db_write_ops"]) == (5, 2)
    assert items["api"]["api_call_count"] == 3
    assert items["api"]["metadata"]["tool_name"] == "weather"
    assert items["cost-event"]["costs"] == {
        "ai_tokens_cost_mc": 0,
        "db_ops_cost_mc": 0,
        "api_calls_cost_mc": 0,
        "compute_time_cost_mc": 8400,
    }
    for item in items.values():
        assert item["session_id"] == "conv-1"
        assert item["user_id"] == "u1"
        assert item["compute_duration_ms"] >= 0
    (end,) = fake_tracker.requests("/v1/track/session/end")
    assert end.answered == 200
    assert set(end.body) == {"session_id", "end_time"}
    assert tracker.stats.as_dict() == {"sent": 6, "retried": 0, "dropped": 0, "failed": 0}


def test_single_route_with_idempotency_keys_and_token(spans: CaptureAnalytics) -> None:
    fake = FakeTracker(batch_route=False)
    try:
        conversation()
        tracker = exporter(fake.url, token="sekrit")
        assert tracker.export(finished(spans)) is SpanExportResult.SUCCESS
        assert tracker.export(finished(spans)) is SpanExportResult.SUCCESS  # again: batch not retried
        tracker.shutdown()
        assert len(fake.requests("/v1/track/interaction/batch")) == 1  # fell back once, remembered
        singles = fake.requests("/v1/track/interaction")
        assert len(singles) == 8
        for request in singles:
            assert request.headers["idempotency-key"] == request.body["metadata"]["span_id"]
            assert request.headers["authorization"] == "Bearer sekrit"
    finally:
        fake.close()


def test_session_start_sent_before_the_first_interaction_of_an_unseen_session(
    spans: CaptureAnalytics, fake_tracker: FakeTracker
) -> None:
    oa.track_interaction(session_id="conv-elsewhere", user_id="u9", model_name="gpt-4o", prompt_tokens=1)
    oa.track_api_call(session_id="conv-elsewhere", user_id="u9")
    tracker = exporter(fake_tracker.url)
    assert tracker.export(finished(spans)) is SpanExportResult.SUCCESS
    starts = fake_tracker.requests("/v1/track/session/start")
    assert [s.body["session_id"] for s in starts] == ["conv-elsewhere"]
    assert fake_tracker.received.index(starts[0]) < fake_tracker.received.index(
        fake_tracker.requests("/v1/track/interaction/batch")[0]
    )
    spans.clear()
    oa.track_api_call(session_id="conv-elsewhere", user_id="u9")
    tracker.export(finished(spans))
    assert len(fake_tracker.requests("/v1/track/session/start")) == 1  # remembered
    tracker.shutdown()


def test_end_of_a_session_the_tracker_does_not_know_starts_it_first(
    spans: CaptureAnalytics, fake_tracker: FakeTracker
) -> None:
    oa.end_session("conv-started-in-another-process", user_id="u3")
    tracker = exporter(fake_tracker.url)
    assert tracker.export(finished(spans)) is SpanExportResult.SUCCESS
    ends = fake_tracker.requests("/v1/track/session/end")
    assert [e.answered for e in ends] == [404, 200]
    assert fake_tracker.sessions["conv-started-in-another-process"]["user_id"] == "u3"
    tracker.shutdown()


def test_non_analytics_spans_are_ignored(fake_tracker: FakeTracker) -> None:
    provider = TracerProvider()
    capture = CaptureAnalytics(provider)
    try:
        with provider.get_tracer("app").start_as_current_span("GET /"):
            pass
        oa.end_session("x")  # its root span maps to nothing either
        tracker = exporter(fake_tracker.url)
        assert tracker.export(finished(capture)) is SpanExportResult.SUCCESS
        assert [r.path for r in fake_tracker.received] == [
            "/v1/track/session/end",
            "/v1/track/session/start",
            "/v1/track/session/end",
        ]
        tracker.shutdown()
    finally:
        capture.close()


def test_500_then_200_is_delivered_after_a_retry(spans: CaptureAnalytics, fake_tracker: FakeTracker) -> None:
    fake_tracker.script("/v1/track/interaction/batch", Fault(status=500), Fault(status=502))
    oa.track_api_call(session_id="s", user_id="u")
    tracker = exporter(fake_tracker.url)
    state = random.getstate()
    assert tracker.export(finished(spans)) is SpanExportResult.SUCCESS
    assert [r.answered for r in fake_tracker.requests("/v1/track/interaction/batch")] == [500, 502, 202]
    assert tracker.stats.retried == 2
    assert random.getstate() == state  # the jitter is not drawn from the app's random module
    assert len(fake_tracker.interactions) == 1
    tracker.shutdown()


def test_429_retry_after_is_honoured(spans: CaptureAnalytics, fake_tracker: FakeTracker) -> None:
    fake_tracker.script("/v1/track/interaction/batch", Fault(status=429, headers={"Retry-After": "1"}))
    oa.track_api_call(session_id="s", user_id="u")
    tracker = exporter(fake_tracker.url)
    started = time.monotonic()
    assert tracker.export(finished(spans)) is SpanExportResult.SUCCESS
    assert time.monotonic() - started >= 1.0
    assert len(fake_tracker.interactions) == 1
    tracker.shutdown()


def test_retry_after_beyond_the_budget_drops_and_counts(spans: CaptureAnalytics, fake_tracker: FakeTracker) -> None:
    fake_tracker.script("/v1/track/interaction/batch", Fault(status=429, headers={"Retry-After": "60"}))
    oa.track_api_call(session_id="s", user_id="u")
    oa.track_api_call(session_id="s", user_id="u")
    tracker = exporter(fake_tracker.url, retry_budget_s=2.0)
    started = time.monotonic()
    assert tracker.export(finished(spans)) is SpanExportResult.FAILURE
    assert time.monotonic() - started < 1.5  # gave up at once: waiting would pass the budget
    assert tracker.stats.dropped == 2
    tracker.shutdown()


def test_other_4xx_are_never_retried(
    spans: CaptureAnalytics, fake_tracker: FakeTracker, caplog: pytest.LogCaptureFixture
) -> None:
    fake_tracker.script("/v1/track/interaction/batch", Fault(status=422))
    fake_tracker.script("/v1/track/interaction/batch", Fault(status=422))
    for _ in range(2):
        oa.track_api_call(session_id="s", user_id="u")
    tracker = exporter(fake_tracker.url)
    assert tracker.export(finished(spans)) is SpanExportResult.FAILURE
    assert len(fake_tracker.requests("/v1/track/interaction/batch")) == 1
    assert tracker.stats.failed == 2
    assert tracker.stats.retried == 0
    assert tracker.export(finished(spans)) is SpanExportResult.FAILURE
    assert sum("refused interactions" in r.getMessage() for r in caplog.records) == 1  # logged once
    tracker.shutdown()


def test_a_bad_item_in_a_batch_does_not_lose_the_good_ones(spans: CaptureAnalytics, fake_tracker: FakeTracker) -> None:
    fake_tracker.script("/v1/track/interaction/batch", Fault(status=400))
    fake_tracker.script("/v1/track/interaction", Fault(status=400))
    for _ in range(3):
        oa.track_api_call(session_id="s", user_id="u")
    tracker = exporter(fake_tracker.url)
    assert tracker.export(finished(spans)) is SpanExportResult.FAILURE
    assert len(fake_tracker.interactions) == 2
    assert (tracker.stats.sent, tracker.stats.failed) == (3, 1)  # the session start and two interactions
    tracker.shutdown()


def test_tracker_down_drops_within_the_budget_and_counts(spans: CaptureAnalytics) -> None:
    oa.track_api_call(session_id="s", user_id="u")
    tracker = exporter(nothing_listening(), retry_budget_s=1.0)
    started = time.monotonic()
    assert tracker.export(finished(spans)) is SpanExportResult.FAILURE
    assert time.monotonic() - started < 3
    assert tracker.stats.dropped == 2  # the session start, then the interaction
    assert tracker.stats.retried >= 1
    tracker.shutdown()


def test_hanging_tracker_times_out_and_is_retried(spans: CaptureAnalytics, fake_tracker: FakeTracker) -> None:
    fake_tracker.script("/v1/track/interaction/batch", Fault(status=202, delay=2.0))
    oa.track_api_call(session_id="s", user_id="u")
    tracker = exporter(fake_tracker.url, timeout_s=0.3)
    assert tracker.export(finished(spans)) is SpanExportResult.SUCCESS
    assert tracker.stats.retried == 1
    tracker.shutdown()


def test_dropped_connection_is_retried(spans: CaptureAnalytics, fake_tracker: FakeTracker) -> None:
    fake_tracker.script("/v1/track/session/start", Fault(drop=True))
    oa.track_api_call(session_id="s", user_id="u")
    tracker = exporter(fake_tracker.url)
    assert tracker.export(finished(spans)) is SpanExportResult.SUCCESS
    assert len(fake_tracker.interactions) == 1
    tracker.shutdown()


def test_non_json_answers_are_failures_not_successes(spans: CaptureAnalytics, fake_tracker: FakeTracker) -> None:
    fake_tracker.script("/v1/track/interaction/batch", Fault(status=200, body=b"<html>hello</html>"))
    oa.track_api_call(session_id="s", user_id="u")
    tracker = exporter(fake_tracker.url)
    assert tracker.export(finished(spans)) is SpanExportResult.FAILURE
    assert tracker.stats.failed == 1
    tracker.shutdown()


def test_recovery_within_the_budget_loses_nothing(clean_env: pytest.MonkeyPatch, fake_tracker: FakeTracker) -> None:
    clean_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    fake_tracker.fail_until = time.monotonic() + 1.5
    handle = oa.configure(
        tracer_provider=TracerProvider(), exporters="tracker", tracker_url=fake_tracker.url, retry_budget_s=10
    )
    try:
        started = time.monotonic()
        for n in range(200):
            oa.track_interaction(session_id=f"conv-{n % 5}", user_id="u", model_name="gpt-4o", prompt_tokens=n)
        assert time.monotonic() - started < 1.0  # the app never waits for the tracker
        assert handle.force_flush(timeout=15)
        assert len(fake_tracker.interactions) == 200
        assert handle.stats()["tracker"]["dropped"] == 0
        assert handle.stats()["tracker"]["retried"] >= 1
    finally:
        handle.shutdown()


def test_shutdown_is_bounded_while_retrying(spans: CaptureAnalytics, fake_tracker: FakeTracker) -> None:
    import threading

    fake_tracker.fail_until = time.monotonic() + 60
    oa.track_api_call(session_id="s", user_id="u")
    tracker = exporter(fake_tracker.url, retry_budget_s=60)
    worker = threading.Thread(target=tracker.export, args=(finished(spans),))
    worker.start()
    time.sleep(0.5)
    started = time.monotonic()
    tracker.shutdown()
    worker.join(5)
    assert not worker.is_alive()
    assert time.monotonic() - started < 2


def test_plain_http_to_another_host_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="ANALYTICS_TRACKER_ALLOW_INSECURE"):
        TrackerSpanExporter(url="http://tracker.example.com")
    TrackerSpanExporter(url="http://tracker.example.com", allow_insecure=True).shutdown()
    TrackerSpanExporter(url="https://tracker.example.com").shutdown()
    TrackerSpanExporter(url="http://localhost:8787").shutdown()
    TrackerSpanExporter(url="http://[::1]:8787").shutdown()


def test_exporter_builds_from_the_environment_alone(clean_env: pytest.MonkeyPatch, fake_tracker: FakeTracker) -> None:
    clean_env.setenv("ANALYTICS_TRACKER_URL", fake_tracker.url)
    clean_env.setenv("ANALYTICS_TRACKER_TOKEN", "env-token")
    tracker = TrackerSpanExporter()  # how the SDK's entry-point path builds it
    assert tracker.url == fake_tracker.url
    capture = CaptureAnalytics()
    try:
        oa.track_api_call(session_id="s", user_id="u")
        assert tracker.export(list(capture.finished())) is SpanExportResult.SUCCESS
    finally:
        capture.close()
    tracker.shutdown()
    assert fake_tracker.received and {r.headers.get("authorization") for r in fake_tracker.received} == {
        "Bearer env-token"
    }
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="opentelemetry_traces_exporter") if e.name == "analytics_tracker"]
    assert entry.load() is TrackerSpanExporter


def test_send_costs_sends_our_estimate(spans: CaptureAnalytics) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202 if "interaction" in request.url.path else 201, json={"status": "accepted"})

    oa.track_interaction(session_id="s", user_id="u", model_name="gpt-4o", prompt_tokens=1000, completion_tokens=100)
    tracker = exporter("http://127.0.0.1:1", send_costs=True, transport=httpx.MockTransport(handler))
    assert tracker.export(finished(spans)) is SpanExportResult.SUCCESS
    import json

    batch = json.loads(seen[-1].content)
    assert batch["interactions"][0]["costs"]["ai_tokens_cost_mc"] == 350
    tracker.shutdown()


def test_contract_timestamps_under_concurrency() -> None:
    from datetime import UTC, datetime

    from otel_analytics.contract import iso

    stamps = [1764410000_000_000_000 + n * 700_000_000 for n in range(200)]  # many distinct seconds
    wrong: list[str] = []

    def check() -> None:
        for _ in range(20):
            for ns in stamps:
                expected = datetime.fromtimestamp(ns // 10**9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
                got = iso(ns)
                if not got.startswith(expected):
                    wrong.append(got)

    in_threads(check, 4)
    assert wrong == []
    assert iso(1764410000_123_456_789) == "2025-11-29T09:53:20.123Z"


class _ViewOnly:
    """A span-like object offering only the public ``attributes`` view."""

    def __init__(self, span: ReadableSpan) -> None:
        self.attributes = span.attributes


def test_span_attributes_are_read_alike_whatever_holds_them() -> None:
    from opentelemetry.trace import SpanContext, TraceFlags

    from otel_analytics.contract import _plain_attributes

    provider = TracerProvider()
    live = provider.get_tracer("t").start_span("s", attributes={"a": 1, "b": ("x", "y"), "c": "z"})
    live.end()
    assert isinstance(live, ReadableSpan)
    direct = ReadableSpan("s", SpanContext(1, 2, False, TraceFlags(1)), attributes={"a": 1, "b": ("x", "y"), "c": "z"})
    empty = ReadableSpan("s", SpanContext(1, 2, False, TraceFlags(1)))
    for span in (live, direct):
        copied = _plain_attributes(span)
        assert copied == {"a": 1, "b": ("x", "y"), "c": "z"} == _plain_attributes(_ViewOnly(span))
        copied["a"] = 2  # a copy: the span's own attributes never change
        assert span.attributes is not None and span.attributes["a"] == 1
    assert _plain_attributes(empty) == {} == _plain_attributes(_ViewOnly(empty))


class _PublicOnly:
    """A span-like object offering only a ``ReadableSpan``'s public API."""

    def __init__(self, span: ReadableSpan) -> None:
        self._span = span
        self.attributes = span.attributes
        self.start_time, self.end_time, self.status = span.start_time, span.end_time, span.status

    def get_span_context(self) -> Any:
        return self._span.get_span_context()


def test_exported_spans_are_read_alike_through_the_fast_path_and_the_public_api() -> None:
    from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

    from otel_analytics.contract import record_from_readable

    provider = TracerProvider()
    live = provider.get_tracer("t").start_span("s", attributes={"session.id": "conv-1"}, start_time=5)
    live.set_status(Status(StatusCode.ERROR))
    live.end(end_time=9)
    assert isinstance(live, _Span)
    finished = live._readable_span()  # what processors hand to exporters
    unended = ReadableSpan("s", SpanContext(2**128 - 1, 2**64 - 1, False, TraceFlags(1)))
    for span in (finished, unended):
        assert type(span) is ReadableSpan
        fast, public = record_from_readable(span), record_from_readable(_PublicOnly(span))
        assert fast == public
    assert record_from_readable(finished)[:4] == (
        live.context.trace_id,
        live.context.span_id,
        5,
        9,
    )
    assert record_from_readable(finished).error is True
    assert record_from_readable(unended)[2:4] == (0, 0)


def test_a_full_default_batch_costs_one_round_trip_of_a_slow_tracker(
    spans: CaptureAnalytics, fake_tracker: FakeTracker
) -> None:
    from otel_analytics.contract import MAX_BATCH
    from otel_analytics.exporters import TRACKER_BATCH_SIZE

    requests = TRACKER_BATCH_SIZE // MAX_BATCH
    for _ in range(TRACKER_BATCH_SIZE + 1):
        oa.track_api_call(session_id="s", user_id="u")
    tracker = exporter(fake_tracker.url)
    first, *batch = finished(spans)
    assert tracker.export([first]) is SpanExportResult.SUCCESS  # the session start, out of the way
    accepted = b'{"count":100,"status":"accepted","message":"ok"}'
    fake_tracker.script("/v1/track/interaction/batch", *[Fault(status=202, body=accepted, delay=1.0)] * requests)
    started = time.monotonic()
    assert tracker.export(batch) is SpanExportResult.SUCCESS
    elapsed = time.monotonic() - started
    assert len(fake_tracker.requests("/v1/track/interaction/batch")) == requests + 1
    assert elapsed < 1.8, f"{requests} batch requests took {elapsed:.1f} s: not sent at once"  # two trips: >= 2 s
    tracker.shutdown()


@pytest.mark.parametrize(
    ("start_ns", "end_ns", "duration_ms", "timestamp"),
    [
        (1_764_410_000_000_000_000, 1_764_410_000_000_000_499, 0.0, "2025-11-29T09:53:20.000Z"),
        (1_764_410_000_000_000_000, 1_764_410_000_000_000_500, 0.001, "2025-11-29T09:53:20.000Z"),
        (1_764_410_000_999_999_999, 1_764_410_002_234_567_000, 1234.567, "2025-11-29T09:53:20.999Z"),
        (1_764_410_000_123_456_789, 1_764_410_000_124_691_356, 1.235, "2025-11-29T09:53:20.123Z"),
        (1_764_410_000_005_000_000, 1_764_410_000_000_000_000, 0.0, "2025-11-29T09:53:20.005Z"),  # ends before
    ],
)
def test_timestamps_and_durations_are_written_to_the_millisecond_and_microsecond(
    start_ns: int, end_ns: int, duration_ms: float, timestamp: str
) -> None:
    from otel_analytics.contract import SpanRecord, interaction_body

    attributes = {"analytics.interaction.type": "db"}
    body = interaction_body(SpanRecord(1, 2, start_ns, end_ns, attributes), "s", "u", "db", False)
    assert (body["timestamp"], body["compute_duration_ms"]) == (timestamp, duration_ms)


def test_a_model_name_given_as_a_str_enum_is_sent_as_its_text() -> None:
    from enum import StrEnum

    from otel_analytics.contract import SpanRecord, interaction_body

    class Model(StrEnum):
        GPT_4O = "gpt-4o"

    attributes = {"analytics.interaction.type": "chat", "gen_ai.request.model": Model.GPT_4O}
    body = interaction_body(SpanRecord(1, 2, 0, 1_000_000, attributes), "s", "u", "chat", False)
    assert body["model_name"] == "gpt-4o" and type(body["model_name"]) is str


def test_the_daemon_pool_runs_at_most_its_size_at_once_and_stops_cleanly() -> None:
    import threading

    from otel_analytics.exporters.daemon_pool import DaemonPool

    pool = DaemonPool(3, "test-pool")
    release, running, peak = threading.Event(), [0], [0]
    lock = threading.Lock()

    def job(n: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(5)
        with lock:
            running[0] -= 1
        if n == 4:
            raise ValueError("job 4")
        return n

    futures = [pool.submit(functools.partial(job, n)) for n in range(6)]
    deadline = time.monotonic() + 5
    while running[0] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # room for a fourth, had the pool started one
    assert peak[0] == 3  # three threads, three jobs at once; the rest wait
    release.set()
    assert [f.result(5) for f in futures if f is not futures[4]] == [0, 1, 2, 3, 5]
    with pytest.raises(ValueError, match="job 4"):
        futures[4].result(5)
    assert all(thread.daemon for thread in threading.enumerate() if thread.name.startswith("test-pool"))
    pool.stop()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: 1)
