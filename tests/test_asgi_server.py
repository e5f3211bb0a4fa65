"""The middleware in front of apps served by a real uvicorn on 127.0.0.1: streaming and disconnects."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import otel_analytics as oa
from otel_analytics.asgi import AnalyticsMiddleware
from otel_analytics.testing import CaptureAnalytics
from tests.chat_apps import Recorder, build, gzipped
from tests.servers import ServerThread


def wait_for_spans(capture: CaptureAnalytics, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spans = capture.spans(type="chat")
        if len(spans) >= count:
            return spans
        time.sleep(0.01)
    return capture.spans(type="chat")


@pytest.fixture
def served(capture_analytics: CaptureAnalytics) -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    server = ServerThread(AnalyticsMiddleware(gzipped(build(recorder, delay=0.25))))
    try:
        yield server.url, recorder
    finally:
        server.close()


def test_streamed_chunks_reach_the_client_as_they_are_produced(
    served: tuple[str, Recorder], capture_analytics: CaptureAnalytics
) -> None:
    url, recorder = served
    arrivals = []
    body = {"conversationId": "conv-live", "model": "claude-3-5-haiku-20241022", "stream": True}
    with (
        httpx.Client(timeout=10) as client,
        client.stream("POST", f"{url}/api/messages?shape=anthropic", json=body) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic())
    produced = recorder.produced_at
    assert len(arrivals) == len(produced) == 4
    for n in range(3):
        assert arrivals[n] < produced[n + 1]  # chunk n was at the client before chunk n+1 existed
    (span,) = wait_for_spans(capture_analytics, 1)
    assert span["attributes"]["gen_ai.usage.output_tokens"] == 15
    # The span covers the whole stream, not just the handler.
    assert (span["end_time"] - span["start_time"]) / 1e9 >= 0.7


def test_client_disconnect_mid_stream_ends_the_span(
    served: tuple[str, Recorder], capture_analytics: CaptureAnalytics
) -> None:
    url, recorder = served
    body = {"conversationId": "conv-gone", "model": "gpt-4o-mini", "stream": True}
    with (
        httpx.Client(timeout=10) as client,
        client.stream("POST", f"{url}/api/messages?shape=sse", json=body) as response,
    ):
        lines = response.iter_lines()
        got = [next(lines) for _ in range(3)]
        assert got[0].startswith("data:")
    # the client is gone after 2 of 21 events
    (span,) = wait_for_spans(capture_analytics, 1)
    a = span["attributes"]
    assert a["analytics.outcome"] == "disconnected"
    assert a["analytics.usage.status"] == "missing"  # the usage chunk never came
    deadline = time.monotonic() + 5
    while not recorder.stream_closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert recorder.stream_closed == ["sse"]
    assert len(recorder.produced_at) < 21


def test_one_conversation_over_several_requests_is_one_trace(
    served: tuple[str, Recorder], capture_analytics: CaptureAnalytics
) -> None:
    url, _ = served
    with httpx.Client(base_url=url, timeout=10, headers={"X-User-Id": "u5"}) as client:
        client.post("/api/convos")
        for shape in ("json", "sse", "json"):
            with client.stream(
                "POST", f"/api/messages?shape={shape}", json={"conversationId": "conv-from-response"}
            ) as response:
                response.read()
        client.delete("/api/convos/conv-from-response")
    chats = wait_for_spans(capture_analytics, 3)
    deadline = time.monotonic() + 5  # the client can have its answer a moment before the span ends
    while not capture_analytics.spans(event="root") and time.monotonic() < deadline:
        time.sleep(0.01)
    expected = format(oa.session_trace_id("conv-from-response"), "032x")
    analytics = [s for s in capture_analytics.spans() if s["kind"] != "SERVER"]
    assert {s["trace_id"] for s in analytics} == {expected}
    assert len(chats) == 3
    assert [
        s["attributes"].get("analytics.session.event")
        for s in analytics
        if "analytics.session.event" in s["attributes"]
    ] == ["start", "end", "root"]
    servers = [s for s in capture_analytics.spans() if s["kind"] == "SERVER"]
    assert len(servers) == 5  # one per request, each in its own request trace
    assert len({s["trace_id"] for s in servers}) == 5


def test_gzip_over_http(served: tuple[str, Recorder], capture_analytics: CaptureAnalytics) -> None:
    url, _ = served
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST", f"{url}/api/messages", json={"conversationId": "conv-gz"}, headers={"Accept-Encoding": "gzip"}
        ) as response,
    ):
        compressed = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(compressed))["id"] == "chatcmpl-42"  # the bytes the app's gzip made
    (span,) = wait_for_spans(capture_analytics, 1)
    assert span["attributes"]["gen_ai.usage.output_tokens"] == 80
