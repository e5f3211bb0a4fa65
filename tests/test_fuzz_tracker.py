"""Property-based: every route of the local tracker, fed anything, answers with the contract (a 2xx,
or an error body), never a 500 or a trace, and never stores an invalid row."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_analytics.report import session_path
from tests.conftest import LocalTracker

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Every kind of character, lone surrogates (JSON's "\ud800") and control characters among them.
ANY_CHAR = st.characters(exclude_categories=())
ANY_TEXT = st.text(ANY_CHAR, max_size=30)
NASTY = st.sampled_from(
    [
        "\ud800",
        "a\udfffb",
        "\ud83d",
        "line\nbreak",
        "tab\there\r",
        "\u202eRTL override",
        "nul\x00inside",
        "x/interactions",
        "a/b/c",
        "?#%&=",
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
    ANY_TEXT,
    NASTY,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(ANY_CHAR, max_size=10), inner, max_size=4)
    ),
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


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def post_json(tracker: LocalTracker, route: str, body: Any) -> httpx.Response:
    """POST ``body`` as the standard library writes JSON: non-ASCII escaped, lone surrogates as
    ``\\ud800`` escapes (httpx's own encoding cannot send those)."""
    return tracker.client.post(route, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


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
    answer = post_json(tracker, route, body)
    check_answer(answer.status_code, answer.text)


@SETTINGS
@given(items=st.one_of(st.lists(bodies, max_size=5), json_values))
def test_batch_route_answers_with_the_contract(tracker: LocalTracker, items: Any) -> None:
    answer = post_json(tracker, "/v1/track/interaction/batch", {"interactions": items})
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
        # What a URL can carry: text that UTF-8 can hold (a client cannot send a lone surrogate).
        st.one_of(NASTY, st.text(ANY_CHAR, max_size=12), st.integers().map(str)).filter(_utf8),
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


@SETTINGS
@given(
    session_id=st.one_of(NASTY.filter(lambda t: 0 < len(t) <= 256), st.text(ANY_CHAR, min_size=1, max_size=256)),
    user_id=st.text(ANY_CHAR, min_size=1, max_size=256),
)
def test_every_id_a_write_accepts_is_found_by_the_reads(tracker: LocalTracker, session_id: str, user_id: str) -> None:
    start = {"session_id": session_id, "user_id": user_id, "start_time": "2026-11-29T10:00:00Z"}
    written = post_json(tracker, "/v1/track/session/start", start)
    if written.status_code == 400:  # refused, with the contract's body: only whitespace-only ids
        assert session_id.isspace() or user_id.isspace(), written.text
        return
    assert written.status_code in (200, 201), written.text
    stored = written.json()["session_id"]
    assert stored == session_id.encode("utf-8", "surrogatepass").decode("utf-8", "replace") or "\ufffd" in stored
    interaction = {**start, "type": "db", "timestamp": "2026-11-29T10:00:01Z", "db_read_ops": 1}
    del interaction["start_time"]
    assert post_json(tracker, "/v1/track/interaction", interaction).status_code == 202
    path = session_path(stored)
    detail = tracker.client.get(path)
    assert detail.status_code == 200, (detail.status_code, detail.text)
    assert detail.json()["id"] == stored
    interactions = tracker.client.get(path + "/interactions")
    assert interactions.status_code == 200 and interactions.json()["session_id"] == stored
    assert len(interactions.json()["interactions"]) >= 1
    listed = tracker.client.get("/v1/sessions", params={"user_id": written_user(tracker, stored)}).json()["data"]
    assert stored in [session["id"] for session in listed]


@SETTINGS
@given(
    text=st.one_of(NASTY.filter(lambda t: 0 < len(t) <= 256), st.text(ANY_CHAR, min_size=1, max_size=256)),
    metadata=st.dictionaries(st.text(ANY_CHAR, max_size=12), json_values, max_size=6),
    route=st.sampled_from(["/v1/track/interaction", "/v1/track/interaction/batch", "/v1/track/session/start"]),
)
def test_every_string_field_is_stored_or_refused_never_a_500(
    tracker: LocalTracker, text: str, metadata: dict[str, Any], route: str
) -> None:
    """Valid bodies whose every string (ids, model name, metadata keys and values) is arbitrary."""
    if route == "/v1/track/session/start":
        body: Any = {"session_id": text, "user_id": text, "start_time": "2026-11-29T10:00:00Z", "metadata": metadata}
    else:
        body = {
            "session_id": text,
            "user_id": text,
            "type": "chat",
            "timestamp": "2026-11-29T10:00:00Z",
            "model_name": text,
            "prompt_tokens": 3,
            "metadata": metadata,
        }
        body = {"interactions": [body]} if route.endswith("batch") else body
    answer = post_json(tracker, route, body)
    check_answer(answer.status_code, answer.text)
    assert answer.status_code < 400 or text.isspace(), answer.text  # only whitespace-only ids are refused


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    session_id=st.one_of(NASTY.filter(lambda t: 0 < len(t) <= 256), st.text(ANY_CHAR, min_size=1, max_size=256)),
    text=ANY_TEXT,
    metadata=st.dictionaries(st.text(ANY_CHAR, max_size=12), json_values, max_size=6),
)
def test_any_text_through_the_package_reaches_the_tracker_and_reads_back(
    tracker: LocalTracker, session_id: str, text: str, metadata: dict[str, Any]
) -> None:
    """Ids, a model name and metadata from the API, through the exporter, over HTTP."""
    import otel_analytics as oa
    from otel_analytics.exporters.tracker import TrackerSpanExporter
    from otel_analytics.testing import CaptureAnalytics

    capture = CaptureAnalytics()
    try:
        oa.track_interaction(
            session_id=session_id, user_id=text or "u", model_name=text or "m", prompt_tokens=1, metadata=metadata
        )
        exporter = TrackerSpanExporter(url=tracker.url, retry_budget_s=2.0)
        exporter.export(list(capture.finished()))
        exporter.shutdown()
    finally:
        capture.close()
    assert (exporter.stats.failed, exporter.stats.dropped) == (0, 0), exporter.stats
    stored = session_id.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if "\ufffd" in stored or session_id.isspace():
        return  # replaced characters, or a trace-named session: found below by what was stored
    answer = tracker.client.get(session_path(session_id) + "/interactions")
    assert answer.status_code == 200, answer.text
    assert answer.json()["interactions"], answer.text


def written_user(tracker: LocalTracker, session_id: str) -> str:
    return str(tracker.store.get_session(session_id)["user_id"])


def test_no_invalid_row_was_stored(tracker: LocalTracker) -> None:
    """Runs after the fuzzing above (same module, same database)."""
    assert tracker.rows("PRAGMA integrity_check") == [("ok",)]
    assert tracker.rows("PRAGMA foreign_key_check") == []
    for session_id, user_id, start, end in tracker.rows("SELECT id, user_id, start_time, end_time FROM sessions"):
        assert isinstance(session_id, str) and 0 < len(session_id) <= 256
        session_id.encode("utf-8")  # valid Unicode: every reader can take it
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
