"""A number out of the contract's range never costs the interaction: the field is dropped, the
interaction flagged, the rest kept and delivered (to the strict fake of the deployed tracker, which
refuses what the contract does, and to the local tracker over HTTP)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import otel_analytics as oa
from otel_analytics.exporters.tracker import TrackerSpanExporter
from otel_analytics.testing import CaptureAnalytics
from tests.asgi_client import call
from tests.conftest import LocalTracker
from tests.fake_tracker import FakeTracker

SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
# Anything an answer or a caller may put where a count goes.
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**53, 2**53 + 1, 2**63, 2**64, -1, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=5),
    st.none(),
)


def valid(value: Any) -> bool:
    return type(value) is int and 0 <= value <= 2**53


@pytest.fixture(scope="module")
def tracker() -> Iterator[FakeTracker]:
    fake = FakeTracker()
    try:
        yield fake
    finally:
        fake.close()


def answering(usage: dict[str, Any]) -> Starlette:
    async def messages(request: Request) -> Response:
        await request.body()
        completion = {"id": "chatcmpl-r", "model": "gpt-4o-mini", "choices": [], "usage": usage}
        # json.dumps writes what JSON cannot hold (NaN, infinities) as Python's JSON reads it back.
        return Response(json.dumps(completion), media_type="application/json")

    return Starlette(routes=[Route("/api/messages", messages, methods=["POST"])])


@SETTINGS
@given(prompt=NUMBERS, completion=NUMBERS, cached=NUMBERS)
def test_counts_read_from_an_answer_are_checked_at_the_edge(
    tracker: FakeTracker, prompt: Any, completion: Any, cached: Any
) -> None:
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    session = f"conv-range-{len(tracker.interactions)}"
    capture = CaptureAnalytics()
    try:
        app = oa.AnalyticsMiddleware(answering(usage), server_span=False)
        body = json.dumps({"conversationId": session, "model": "gpt-4o-mini"}).encode()
        asyncio.run(call(app, "POST", "/api/messages", body=body))
        chat = capture.spans(type="chat")[0]["attributes"]
        exporter = TrackerSpanExporter(url=tracker.url, retry_budget_s=2.0)
        exporter.export(list(capture.finished()))
        exporter.shutdown()
        assert (exporter.stats.failed, exporter.stats.dropped) == (0, 0)  # the tracker took it
    finally:
        capture.close()
    (sent,) = [item for item in tracker.interactions if item["session_id"] == session]
    # The cached count is read with the chat counts (an answer with neither reports none).
    given = [value for value in (prompt, completion) if value is not None]
    if given and cached is not None:
        given.append(cached)
    dropped = any(not valid(value) for value in given)
    assert chat["analytics.usage.status"] == ("invalid" if dropped else "reported" if given else "missing")
    assert sent.get("prompt_tokens") == (prompt if valid(prompt) else None)
    assert sent.get("completion_tokens") == (completion if valid(completion) else None)
    assert sent["metadata"].get("usage") == ("invalid" if dropped else None if given else "missing")


@SETTINGS
@given(
    prompt=NUMBERS,
    duration=st.one_of(NUMBERS, st.sampled_from([1e12, 1e12 + 1, 1e300])),
    cost=NUMBERS,
    offset_days=st.sampled_from([0, -365 * 40, 365 * 90, -365 * 3000]),
)
def test_track_interaction_drops_what_is_out_of_range_and_keeps_the_rest(
    tracker: FakeTracker, prompt: Any, duration: Any, cost: Any, offset_days: int
) -> None:
    session = f"conv-track-{len(tracker.interactions)}"
    when = (
        datetime.now(UTC) + timedelta(days=offset_days) if offset_days > -365 * 2000 else datetime(1, 1, 2, tzinfo=UTC)
    )
    capture = CaptureAnalytics()
    try:
        oa.track_interaction(
            session_id=session,
            user_id="u",
            model_name="gpt-4o",
            prompt_tokens=prompt,
            completion_tokens=5,
            compute_duration_ms=duration,
            costs={"ai_tokens_cost_mc": cost},
            timestamp=when,
        )
        exporter = TrackerSpanExporter(url=tracker.url, retry_budget_s=2.0)
        exporter.export(list(capture.finished()))
        exporter.shutdown()
        assert (exporter.stats.failed, exporter.stats.dropped) == (0, 0)
    finally:
        capture.close()
    (sent,) = [item for item in tracker.interactions if item["session_id"] == session]
    assert sent["completion_tokens"] == 5  # the rest is kept
    assert sent.get("prompt_tokens") == (prompt if valid(prompt) else None)
    assert 2000 <= datetime.fromisoformat(sent["timestamp"]).year < 2100
    assert 0 <= sent["compute_duration_ms"] <= 1e12
    if valid(cost):
        assert sent["costs"]["ai_tokens_cost_mc"] == cost
    else:
        assert "costs" not in sent


def test_the_local_tracker_stores_an_answer_with_a_count_out_of_range(tmp_path: Path) -> None:
    local = LocalTracker(str(tmp_path / "ranges.db"))
    capture = CaptureAnalytics()
    try:
        app = oa.AnalyticsMiddleware(answering({"prompt_tokens": 2**70, "completion_tokens": 12}), server_span=False)
        body = b'{"conversationId": "conv-huge", "model": "gpt-4o-mini"}'
        asyncio.run(call(app, "POST", "/api/messages", body=body))
        exporter = TrackerSpanExporter(url=local.url, retry_budget_s=2.0)
        exporter.export(list(capture.finished()))
        exporter.shutdown()
        assert exporter.stats.sent >= 1 and exporter.stats.failed == 0
        rows = local.rows("SELECT prompt_tokens, completion_tokens, metadata FROM interactions")
        assert [(p, c, json.loads(m)["usage"]) for p, c, m in rows] == [(None, 12, "invalid")]
    finally:
        capture.close()
        local.close()


def test_a_decorator_count_out_of_range_is_a_programming_error_where_it_is_written() -> None:
    with pytest.raises(ValueError, match="from 0 to 2\\*\\*53"):
        oa.interaction("db", read_ops=2**60)
