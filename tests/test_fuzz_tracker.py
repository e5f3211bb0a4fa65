"""Property-based: every route of the local tracker, fed anything, answers with the contract (a 2xx,
or an error body), never a 500 or a trace, and never stores an invalid row."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import LocalTracker

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NASTY = st.sampled_from(
    [
        "'; DROP TABLE sessions; --",
        '" OR 1=1 --',
        "conv-1",
        "%00",
        "\x00",
        "é" * 300,
        "x" * 257,
        "",
        " ",
        "../../etc/passwd",
        "chat",
        "db",
        "api",
        "cost-event",
        "completed",
    ]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    NASTY,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)
timestamps = st.one_of(
    st.sampled_from(
        [
            "2026-11-29T10:15:00.123Z",
            "1970-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2026-11-29T10:15:00",
            "2026-13-45T99:99:99Z",
            "yesterday",
        ]
    ),
    scalars,
)
FIELDS = {
    "session_id": st.one_of(NASTY, scalars),
    "user_id": st.one_of(NASTY, scalars),
    "type": st.one_of(st.sampled_from(["chat", "db", "api", "cost-event", "CHAT", "embeddings"]), scalars),
    "timestamp": timestamps,
    "start_time": timestamps,
    "end_time": timestamps,
    "model_name": st.one_of(st.just("gpt-4o"), scalars),
    "prompt_tokens": scalars,
    "completion_tokens": scalars,
    "db_read_ops": scalars,
    "db_write_ops": scalars,
    "api_call_count": scalars,
    "compute_duration_ms": scalars,
    "status": st.one_of(st.sampled_from(["completed", "failed", "timeout", "done"]), scalars),
    "costs": st.one_of(
        st.dictionaries(st.sampled_from(["ai_tokens_cost_mc", "db_ops_cost_mc", "tip"]), scalars), scalars
    ),
    "metadata": json_values,
    "unexpected": scalars,
}
bodies = st.fixed_dictionaries({}, optional=FIELDS)
ROUTES = ["/v1/track/session/start", "/v1/track/session/end", "/v1/track/interaction"]


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTracker]:
    local = LocalTracker(str(Path(tmp_path_factory.mktemp("fuzz")) / "fuzz.db"))
    try:
        yield local
    finally:
        local.close()


def check_answer(status: int, text: str) -> None:
    assert status in (200, 201, 202, 400, 404, 413), (status, text[:300])
    payload = json.loads(text)
    if status >= 400:
        assert set(payload) == {"error", "message", "details"}
        assert payload["error"] in ("invalid_request", "not_found", "payload_too_large")
        assert "Traceback" not in text


@SETTINGS
@given(route=st.sampled_from(ROUTES), body=st.one_of(bodies, json_values))
def test_write_routes_answer_with_the_contract(tracker: LocalTracker, route: str, body: Any) -> None:
    answer = tracker.client.post(route, json=body)
    check_answer(answer.status_code, answer.text)


@SETTINGS
@given(items=st.one_of(st.lists(bodies, max_size=5), json_values))
def test_batch_route_answers_with_the_contract(tracker: LocalTracker, items: Any) -> None:
    answer = tracker.client.post("/v1/track/interaction/batch", json={"interactions": items})
    check_answer(answer.status_code, answer.text)


@SETTINGS
@given(raw=st.one_of(st.binary(max_size=200), st.just(b"{" * 20000), st.just(b'{"session_id": NaN}')))
def test_raw_bodies(tracker: LocalTracker, raw: bytes) -> None:
    for route in [*ROUTES, "/v1/track/interaction/batch"]:
        answer = tracker.client.post(route, content=raw, headers={"Content-Type": "application/json"})
        check_answer(answer.status_code, answer.text)
    otlp = tracker.client.post("/v1/traces", content=raw, headers={"Content-Type": "application/x-protobuf"})
    assert otlp.status_code in (200, 400), otlp.text


@SETTINGS
@given(
    params=st.dictionaries(
        st.sampled_from(
            [
                "user_id",
                "start_time_min",
                "start_time_max",
                "active_only",
                "limit",
                "offset",
                "sort",
                "type",
                "start_date",
                "end_date",
            ]
        ),
        st.one_of(NASTY, st.text(max_size=12), st.integers().map(str)),
        max_size=5,
    ),
    path=st.sampled_from(
        [
            "/v1/sessions",
            "/v1/sessions/conv-1",
            "/v1/sessions/conv-1/interactions",
            "/v1/stats/summary",
            "/v1/stats/daily",
            "/v1/stats/by-user",
        ]
    ),
)
def test_read_routes_answer_with_the_contract(tracker: LocalTracker, params: dict[str, str], path: str) -> None:
    answer = tracker.client.get(path, params=params)
    check_answer(answer.status_code, answer.text)


def test_no_invalid_row_was_stored(tracker: LocalTracker) -> None:
    """Runs after the fuzzing above (same module, same database)."""
    assert tracker.rows("PRAGMA integrity_check") == [("ok",)]
    assert tracker.rows("PRAGMA foreign_key_check") == []
    for session_id, user_id, start, end in tracker.rows("SELECT id, user_id, start_time, end_time FROM sessions"):
        assert isinstance(session_id, str) and 0 < len(session_id) <= 256
        assert isinstance(user_id, str) and 0 < len(user_id) <= 256
        for stamp in (start, end):
            if stamp is not None:
                assert 2000 <= datetime.fromisoformat(stamp).year < 2100
    rows = tracker.rows(
        "SELECT type, status, model_name, prompt_tokens, completion_tokens, db_read_ops, db_write_ops, "
        "api_call_count, duration_ms, total_cost_mc, timestamp, metadata FROM interactions"
    )
    for kind, status, model, *numbers, duration, cost, stamp, metadata in rows:
        assert kind in ("chat", "db", "api", "cost-event")
        assert status in ("completed", "failed", "timeout")
        assert kind != "chat" or (isinstance(model, str) and model)
        assert all(n is None or (type(n) is int and n >= 0) for n in numbers)
        assert duration is None or duration >= 0
        assert type(cost) is int and cost >= 0
        assert 2000 <= datetime.fromisoformat(stamp).year < 2100
        assert isinstance(json.loads(metadata), dict)
