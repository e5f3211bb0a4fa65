"""Tracker outages, seen from the instrumented app: requests keep succeeding, memory stays bounded,
nothing is lost within the retry budget and what is lost past it is counted."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

import otel_analytics as oa
from otel_analytics.exporters.tracker import TrackerSpanExporter
from otel_analytics.testing import CaptureAnalytics
from tests.chat_apps import build
from tests.fake_tracker import FakeTracker
from tests.servers import ServerThread


class SilentServer:
    """Accepts connections and never answers."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
                self._held.append(conn)
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        for conn in self._held:
            conn.close()
        self._sock.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def spans(count: int = 3) -> list[Any]:
    capture = CaptureAnalytics()
    try:
        for n in range(count):
            oa.track_interaction(session_id="conv-out", user_id="u", model_name="gpt-4o", prompt_tokens=n + 1)
        return list(capture.finished())
    finally:
        capture.close()


class NoSuchHost(httpx.BaseTransport):
    """DNS failure, as the resolver reports it (name lookups leave this machine, so they are simulated)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)


@pytest.mark.parametrize("fault", ["refused", "dns", "tls", "silent"])
def test_each_outage_is_retried_within_the_budget_then_counted(fault: str, silent_server: SilentServer) -> None:
    kwargs: dict[str, Any] = {"retry_budget_s": 1.5, "timeout_s": 0.3}
    if fault == "refused":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # closed again: nothing listens
    elif fault == "dns":
        url, kwargs["transport"] = "https://tracker.invalid", NoSuchHost()
    elif fault == "tls":
        fake = FakeTracker()  # speaks plain HTTP: the TLS handshake fails
        url = fake.url.replace("http://", "https://")
    else:
        url = silent_server.url
    exporter = TrackerSpanExporter(url=url, **kwargs)
    started = time.monotonic()
    assert exporter.export(spans()) is SpanExportResult.FAILURE
    assert time.monotonic() - started < 4  # bounded by the budget (and one timeout)
    assert exporter.stats.dropped == 4  # the session start and three interactions, counted
    assert exporter.stats.retried >= 1
    exporter.shutdown()
    if fault == "tls":
        fake.close()


def test_the_app_keeps_answering_while_the_tracker_hangs(
    clean_env: pytest.MonkeyPatch, silent_server: SilentServer
) -> None:
    clean_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    handle = oa.configure(
        tracer_provider=TracerProvider(),
        exporters="tracker",
        tracker_url=silent_server.url,
        timeout_s=5,
        retry_budget_s=30,
    )
    server = ServerThread(oa.AnalyticsMiddleware(build()))
    try:
        slowest = 0.0
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for n in range(60):
                started = time.monotonic()
                shape = "sse" if n % 3 == 0 else "json"
                response = client.post(f"/api/messages?shape={shape}", json={"conversationId": f"conv-{n % 4}"})
                slowest = max(slowest, time.monotonic() - started)
                assert response.status_code == 200
        # The exporter is stuck on a silent tracker for seconds; requests never wait for it.
        assert slowest < 1.0
    finally:
        server.close()
        started = time.monotonic()
        handle.shutdown(timeout=1)
        assert time.monotonic() - started < 3


def test_a_full_queue_drops_oldest_and_counts(clean_env: pytest.MonkeyPatch, silent_server: SilentServer) -> None:
    clean_env.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "50")
    clean_env.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10")
    clean_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    handle = oa.configure(
        tracer_provider=TracerProvider(),
        exporters="tracker",
        tracker_url=silent_server.url,
        timeout_s=5,
        retry_budget_s=30,
    )
    try:
        for n in range(1000):
            oa.track_api_call(session_id=f"conv-{n}", user_id="u")
        stats = handle.stats()["tracker"]
        assert stats["queued_or_lost"] >= 1000 - 50 - 10  # at most a queue and a batch held in memory
    finally:
        handle.shutdown(timeout=1)


def test_nothing_lost_and_nothing_doubled_through_an_outage(clean_env: pytest.MonkeyPatch) -> None:
    """The tracker refuses everything (503) for a while, then recovers within the retry budget."""
    proxy = FakeTracker()
    proxy.fail_until = time.monotonic() + 1.5
    clean_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    handle = oa.configure(
        tracer_provider=TracerProvider(), exporters="tracker", tracker_url=proxy.url, retry_budget_s=15
    )
    try:
        for n in range(300):
            oa.track_interaction(session_id=f"conv-{n % 10}", user_id="u", model_name="gpt-4o", prompt_tokens=n)
        assert handle.force_flush(timeout=20)
        assert handle.stats()["tracker"]["dropped"] == 0
        assert len(proxy.interactions) == 300
        keys = {i["metadata"]["span_id"] for i in proxy.interactions}
        assert len(keys) == 300  # retried requests were refused, never stored twice
    finally:
        handle.shutdown()
        proxy.close()


def test_an_outage_is_said_once_with_numbers_and_so_is_the_recovery(
    fake_tracker: FakeTracker, caplog: pytest.LogCaptureFixture
) -> None:
    capture = CaptureAnalytics()
    try:
        oa.track_interaction(session_id="conv-out", user_id="u", model_name="gpt-4o", prompt_tokens=1)
        spans = list(capture.finished())
    finally:
        capture.close()
    exporter = TrackerSpanExporter(url=fake_tracker.url, retry_budget_s=10)
    exporter.unreachable_warning_s = 0.3
    fake_tracker.fail_until = time.monotonic() + 2.0  # 503 to everything for two seconds
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS  # retried until it answered
    finally:
        exporter.shutdown()
    outage = [r.getMessage() for r in caplog.records if "has not answered for" in r.getMessage()]
    assert len(outage) == 1, outage  # rate-limited, however many retries
    assert f"the tracker at {fake_tracker.url} has not answered for" in outage[0]
    assert "HTTP 503" in outage[0] and "dropped so far" in outage[0]
    assert any("answers again" in r.getMessage() for r in caplog.records)
    assert [i["session_id"] for i in fake_tracker.interactions] == ["conv-out"]
