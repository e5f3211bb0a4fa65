"""Loud when it sees nothing, quiet otherwise: each warning once, in the situation it names, with
its fix; none in an app set up right."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import otel_analytics as oa
from otel_analytics import _guard
from otel_analytics.asgi.diagnostics import ANSWERS_BEFORE_SAYING, REQUESTS_BEFORE_SAYING
from otel_analytics.testing import CaptureAnalytics
from tests.asgi_client import call
from tests.chat_apps import build

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_guard, "_seen", set())  # warn_once: once per test, not per process


def said(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "otel_analytics" and text in r.getMessage()]


@pytest.fixture
def capture() -> Iterator[CaptureAnalytics]:
    captured = CaptureAnalytics()
    try:
        yield captured
    finally:
        captured.close()


async def test_disabled_analytics_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    capture = CaptureAnalytics(enabled=False)
    try:
        app = oa.AnalyticsMiddleware(build(), server_span=False)
        for _ in range(3):
            await call(app, "POST", "/api/messages", body=b'{"conversationId": "c"}')
    finally:
        capture.close()
    assert len(said(caplog, "analytics is disabled")) == 1


async def test_requests_that_name_no_session_and_match_no_rule(
    capture: CaptureAnalytics, caplog: pytest.LogCaptureFixture
) -> None:
    app = oa.AnalyticsMiddleware(build(), server_span=False)
    for _ in range(REQUESTS_BEFORE_SAYING + 10):
        await call(app, "POST", "/api/other", body=b'{"text": "hi"}')
    (message,) = said(caplog, "requests seen and none recorded")
    assert "ANALYTICS_ROUTES" in message and "X-Session-Id" in message
    assert capture.spans(type="chat") == []


async def test_a_chat_route_that_never_shows_usage(capture: CaptureAnalytics, caplog: pytest.LogCaptureFixture) -> None:
    app = oa.AnalyticsMiddleware(build(), server_span=False)
    for _ in range(ANSWERS_BEFORE_SAYING + 5):
        await call(app, "POST", "/api/messages", query=b"shape=text", body=b'{"conversationId": "conv-q"}')
    (message,) = said(caplog, "answered 10 times with no usage")
    assert "POST /api/messages/*" in message and "ANALYTICS_LLM_HOSTS" in message


async def test_an_app_set_up_right_is_quiet(capture: CaptureAnalytics, caplog: pytest.LogCaptureFixture) -> None:
    app = oa.AnalyticsMiddleware(build(), server_span=False)
    for n in range(REQUESTS_BEFORE_SAYING + ANSWERS_BEFORE_SAYING):
        await call(app, "POST", "/api/messages", body=b'{"conversationId": "conv-ok", "model": "gpt-4o"}')
        if n % 10 == 0:
            await call(app, "GET", "/api/other")
    caplog.set_level(logging.WARNING)
    assert [r.getMessage() for r in caplog.records if r.name == "otel_analytics"] == []
    assert len(capture.spans(type="chat")) == REQUESTS_BEFORE_SAYING + ANSWERS_BEFORE_SAYING
