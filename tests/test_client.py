from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry import trace

import otel_analytics as oa
from otel_analytics import runtime as _runtime
from otel_analytics.pricing import NewNameBudget, PriceBook
from otel_analytics.testing import CaptureAnalytics


def test_track_interaction_records_the_contract_fields(capture_analytics: CaptureAnalytics) -> None:
    when = datetime(2026, 11, 29, 10, 15, tzinfo=UTC)
    interaction_id = oa.track_interaction(
        session_id="conv-1",
        user_id="u1",
        type="chat",
        model_name="gpt-4o",
        prompt_tokens=450,
        completion_tokens=320,
        compute_duration_ms=1250,
        timestamp=when,
        metadata={"endpoint": "/api/messages", "api_key": "sk-canary"},
    )
    span = capture_analytics.spans(type="chat")[0]
    assert interaction_id == span["span_id"]
    assert span["start_time"] == int(when.timestamp() * 1e9)
    assert span["end_time"] - span["start_time"] == 1_250_000_000
    a = span["attributes"]
    assert a["session.id"] == "conv-1"
    assert a["user.id"] == "u1"
    assert a["gen_ai.request.model"] == "gpt-4o"
    assert a["gen_ai.usage.input_tokens"] == 450
    assert a["gen_ai.usage.output_tokens"] == 320
    assert json.loads(a["analytics.metadata"]) == {"endpoint": "/api/messages", "api_key": "[REDACTED]"}
    assert a["analytics.cost.micro_cents"] == round(450 * 0.25) + round(320 * 1.0)


def test_db_and_api_helpers(capture_analytics: CaptureAnalytics) -> None:
    oa.track_db_operation(session_id="conv-1", user_id="u1", read_ops=5, write_ops=2)
    oa.track_api_call(session_id="conv-1", user_id="u1", call_count=3, metadata={"tool_name": "weather"})
    db = capture_analytics.spans(type="db")[0]["attributes"]
    api = capture_analytics.spans(type="api")[0]["attributes"]
    assert (db["analytics.db.read_ops"], db["analytics.db.write_ops"]) == (5, 2)
    assert api["analytics.api.call_count"] == 3
    assert "gen_ai.operation.name" not in db


def test_explicit_costs_and_status(capture_analytics: CaptureAnalytics) -> None:
    oa.track_interaction(
        session_id="s",
        user_id="u",
        type="cost-event",
        status="failed",
        costs={"ai_tokens_cost_mc": 4500, "compute_time_cost_mc": 8400},
    )
    span = capture_analytics.spans(type="cost-event")[0]
    a = span["attributes"]
    assert a["analytics.cost.ai_tokens_cost_mc"] == 4500
    assert a["analytics.cost.micro_cents"] == 12900
    assert a["analytics.status"] == "failed"
    assert span["kind"] == "INTERNAL"


@pytest.mark.parametrize("session_id", ["s", None], ids=["in a session", "no session"])
def test_costs_given_are_the_interactions_cost(capture_analytics: CaptureAnalytics, session_id: str | None) -> None:
    """A chat given its costs: their sum is its cost, whatever the price table says and whether
    it reported usage or not (both recording paths: in a session, and a span with none)."""
    oa.track_interaction(
        session_id=session_id,
        model_name="gpt-4o",
        prompt_tokens=1000,
        completion_tokens=100,
        costs={"db_ops_cost_mc": 40, "ai_tokens_cost_mc": 300},
    )
    oa.track_interaction(session_id=session_id, model_name="gpt-4o", costs={"api_calls_cost_mc": 7})
    priced_by_tokens, without_usage = (span["attributes"] for span in capture_analytics.spans(type="chat"))
    assert priced_by_tokens["analytics.cost.micro_cents"] == 340
    assert priced_by_tokens["analytics.cost.usd"] == pytest.approx(340 / 100_000)
    assert priced_by_tokens["analytics.pricing.status"] == "given"
    assert "analytics.pricing.version" not in priced_by_tokens
    assert priced_by_tokens["analytics.cost.api_calls_cost_mc"] == 0  # every part, as the tracker gets them
    assert without_usage["analytics.usage.status"] == "missing"
    assert without_usage["analytics.pricing.status"] == "given"
    assert without_usage["analytics.cost.usd"] == pytest.approx(7 / 100_000)


@pytest.mark.parametrize("session_id", ["s", None], ids=["in a session", "no session"])
def test_cost_parts_set_as_attributes_are_the_interactions_cost(
    capture_analytics: CaptureAnalytics, session_id: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """A cost part set on a live interaction is a given cost, as ``costs=`` is: the span's cost
    and status say so (the tracker counts the parts either way); a bad one is dropped, warned."""
    from otel_analytics import _guard
    from otel_analytics.contract import record_from_readable, to_call

    _guard._seen.clear()
    with oa.interaction("chat", model="gpt-4o", session_id=session_id) as it:
        it.record_usage(input_tokens=1000, output_tokens=100)
        it.set_attribute("analytics.cost.db_ops_cost_mc", 40)
        it.set_attribute("analytics.cost.ai_tokens_cost_mc", 200)
        it.set_attribute("analytics.cost.ai_tokens_cost_mc", 300)  # set again: the last value counts
        with caplog.at_level(logging.WARNING, logger="otel_analytics"):
            it.set_attribute("analytics.cost.api_calls_cost_mc", -5)
    with oa.interaction("db", session_id=session_id) as it:
        it.set_attribute("analytics.cost.db_ops_cost_mc", 0)
    chat = capture_analytics.spans(type="chat")[0]["attributes"]
    assert chat["analytics.cost.micro_cents"] == 340
    assert chat["analytics.cost.usd"] == pytest.approx(340 / 100_000)
    assert chat["analytics.pricing.status"] == "given"
    assert "analytics.cost.api_calls_cost_mc" not in chat
    assert sum("analytics.cost.api_calls_cost_mc=-5" in r.getMessage() for r in caplog.records) == 1
    db = capture_analytics.spans(type="db")[0]["attributes"]
    assert (db["analytics.cost.micro_cents"], db["analytics.pricing.status"]) == (0, "given")
    bodies = [call.body for span in capture_analytics.finished() if (call := to_call(record_from_readable(span)))]
    (chat_body,) = (body for body in bodies if body.get("type") == "chat")
    assert chat_body["costs"] == {
        "ai_tokens_cost_mc": 300,
        "db_ops_cost_mc": 40,
        "api_calls_cost_mc": 0,
        "compute_time_cost_mc": 0,
    }


def test_bad_fields_are_dropped_with_one_warning_and_the_rest_kept(
    capture_analytics: CaptureAnalytics, caplog: pytest.LogCaptureFixture
) -> None:
    from otel_analytics import _guard

    _guard._seen.clear()
    with caplog.at_level(logging.WARNING, logger="otel_analytics"):
        for _ in range(3):
            oa.track_interaction(
                session_id="s",
                user_id="u",
                model_name="gpt-4o",
                prompt_tokens=-1,
                completion_tokens=5,
                compute_duration_ms="slow",  # type: ignore[arg-type]
                status="weird",
            )
        assert oa.track_interaction(session_id="s", user_id="u", type="bogus") is None
        oa.track_interaction(session_id="s", user_id="u")  # chat without a model
        oa.track_db_operation(session_id="s", read_ops=-3, write_ops=1)
    chats = capture_analytics.spans(type="chat")
    assert len(chats) == 4
    first = chats[0]["attributes"]
    assert "gen_ai.usage.input_tokens" not in first
    assert first["gen_ai.usage.output_tokens"] == 5
    assert "analytics.status" not in first
    assert chats[-1]["attributes"]["gen_ai.request.model"] == "unknown"
    db = capture_analytics.spans(type="db")[0]["attributes"]
    assert (db["analytics.db.read_ops"], db["analytics.db.write_ops"]) == (0, 1)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("prompt_tokens=-1" in m for m in messages) == 1
    assert sum("invalid type 'bogus'" in m for m in messages) == 1
    assert sum("status='weird'" in m for m in messages) == 1


def test_a_chats_response_id_is_recorded_and_a_bad_one_ignored_with_one_warning(
    capture_analytics: CaptureAnalytics, caplog: pytest.LogCaptureFixture
) -> None:
    from otel_analytics import _guard

    _guard._seen.clear()
    oa.track_interaction(session_id="s", model_name="gpt-4o", prompt_tokens=1, response_id="chatcmpl-1")
    oa.track_interaction(model_name="gpt-4o", prompt_tokens=1, response_id="chatcmpl-2")  # no session: live span
    with caplog.at_level(logging.WARNING, logger="otel_analytics"):
        for bad in (42, "", "x" * 257):
            oa.track_interaction(session_id="s", model_name="gpt-4o", prompt_tokens=1, response_id=bad)  # type: ignore[arg-type]
    ids = [span["attributes"].get("gen_ai.response.id") for span in capture_analytics.spans(type="chat")]
    assert ids == ["chatcmpl-1", "chatcmpl-2", None, None, None]
    assert sum("ignoring response_id=42" in r.getMessage() for r in caplog.records) == 1


def test_session_and_user_come_from_context(capture_analytics: CaptureAnalytics) -> None:
    with oa.session("conv-ctx", user_id="u-ctx", start=False, end=False):
        oa.track_api_call()
    a = capture_analytics.spans(type="api")[0]["attributes"]
    assert (a["session.id"], a["user.id"]) == ("conv-ctx", "u-ctx")


class _Health:
    def __init__(self, body: Any, status: int = 200, delay: float = 0.0) -> None:
        self.body, self.status, self.delay = body, status, delay
        self.requests: list[dict[str, str]] = []


@pytest.fixture
def health_server() -> Iterator[tuple[str, _Health]]:
    state = _Health({"status": "ok", "database": {"status": "connected", "latency_ms": 1}})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append({"path": self.path, **dict(self.headers.items())})
            threading.Event().wait(state.delay)
            payload = state.body if isinstance(state.body, bytes) else json.dumps(state.body).encode()
            try:
                self.send_response(state.status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (the timeout case): nothing to answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def test_health_check(health_server: tuple[str, _Health], clean_env: pytest.MonkeyPatch) -> None:
    url, state = health_server
    clean_env.setenv("ANALYTICS_TRACKER_TOKEN", "canary-token")
    clean_env.setenv("ANALYTICS_TRACKER_URL", url)
    assert oa.health_check() is True
    assert state.requests[-1]["path"] == "/health"
    assert "Authorization" not in state.requests[-1]  # /health takes no token
    state.body = {"status": "healthy"}
    assert oa.health_check(url) is False
    state.body = b"<html>not json</html>"
    assert oa.health_check(url) is False
    state.body, state.status = {"status": "ok"}, 500
    assert oa.health_check(url) is False
    state.status, state.delay = 200, 1.0
    assert oa.health_check(url, timeout_s=0.2) is False


def test_health_check_without_a_tracker(clean_env: pytest.MonkeyPatch) -> None:
    from tests.helpers import nothing_listening

    clean_env.setenv("ANALYTICS_TRACKER_URL", nothing_listening())  # not 8787: a tracker may run there
    assert oa.health_check() is False
    assert oa.health_check(nothing_listening()) is False  # refused


def test_track_calls_go_where_a_live_span_would(capture_analytics: CaptureAnalytics) -> None:
    from otel_analytics.ids import session_root_span_id, session_trace_id

    with oa.session("conv-place", user_id="u1", start=False, end=False):
        with oa.interaction("chat", model="gpt-4o-mini"):
            inner_id = oa.track_db_operation(read_ops=1)
        request = capture_analytics.provider.get_tracer("app").start_span("POST /api/messages")
        with trace.use_span(request, end_on_exit=True):
            linked_id = oa.track_api_call()
    oa.track_api_call(session_id=None)  # no session anywhere: still recorded
    chat = capture_analytics.spans(type="chat")[0]
    db = capture_analytics.spans(type="db")[0]
    api_linked, api_alone = capture_analytics.spans(type="api")
    assert db["span_id"] == inner_id and db["parent_span_id"] == chat["span_id"]
    assert db["trace_id"] == f"{session_trace_id('conv-place'):032x}"
    # outside the session's trace: under the session root, linked both ways with the request span
    assert api_linked["span_id"] == linked_id
    assert api_linked["parent_span_id"] == f"{session_root_span_id('conv-place'):016x}"
    server = next(s for s in capture_analytics.finished() if s.name == "POST /api/messages")
    assert api_linked["links"] == [f"{server.context.span_id:016x}"]
    assert [f"{link.context.span_id:016x}" for link in server.links] == [linked_id]
    assert server.attributes is not None and server.attributes["analytics.session.id"] == "conv-place"
    assert "session.id" not in server.attributes
    assert "session.id" not in api_alone["attributes"]


def test_an_internal_error_in_track_is_swallowed_and_logged_once(
    capture_analytics: CaptureAnalytics, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from otel_analytics import _guard, client

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ValueError("recording bug")

    monkeypatch.setattr(client, "emit_interaction", broken)
    monkeypatch.setattr(_guard, "RAISE_UNDER_PYTEST", False)
    _guard._seen.clear()
    with caplog.at_level(logging.ERROR, logger="otel_analytics"):
        for _ in range(3):
            assert oa.track_interaction(session_id="c", model_name="gpt-4o-mini", prompt_tokens=1) is None
    assert sum("internal error in track_interaction" in r.getMessage() for r in caplog.records) == 1
    monkeypatch.setattr(_guard, "RAISE_UNDER_PYTEST", True)
    with pytest.raises(KeyboardInterrupt):  # only exceptions are swallowed, never a KeyboardInterrupt
        with _guard.internal_errors("test"):
            raise KeyboardInterrupt


def test_a_model_not_looked_up_for_want_of_budget_is_flagged_so(
    capture_analytics: CaptureAnalytics, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = _runtime.current()
    monkeypatch.setattr(runtime, "prices", PriceBook(budget=NewNameBudget(burst=1, per_second=0.0)))
    for model in ("gpt-4o", "no-such-model", "gpt-4o-mini"):  # the budget: one lookup, gpt-4o's
        oa.track_interaction(session_id="conv-1", model_name=model, prompt_tokens=10, completion_tokens=5)
    by_model = {span["attributes"]["gen_ai.request.model"]: span["attributes"] for span in capture_analytics.spans()}
    assert by_model["gpt-4o"]["analytics.cost.micro_cents"] == 7  # 10 at 2.5/M (rounds to 2) + 5 at 10/M
    assert by_model["no-such-model"]["analytics.pricing.status"] == "not_looked_up"
    assert by_model["gpt-4o-mini"]["analytics.pricing.status"] == "not_looked_up"
    assert "analytics.cost.micro_cents" not in by_model["gpt-4o-mini"]
    # The tokens are kept: a tracker that prices what it stores (the local one does) still can.
    assert by_model["gpt-4o-mini"]["gen_ai.usage.input_tokens"] == 10
