"""The local tracker's routes over real HTTP: contract answers, validation, auth, reads."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
import pytest

from tests.conftest import LocalTracker

T0 = "2026-11-29T10:00:00.000Z"


def start(client: httpx.Client, session_id: str = "conv-1", user_id: str = "u1", **extra: Any) -> httpx.Response:
    return client.post(
        "/v1/track/session/start", json={"session_id": session_id, "user_id": user_id, "start_time": T0, **extra}
    )


def chat(session_id: str = "conv-1", user_id: str = "u1", **extra: Any) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "user_id": user_id,
        "type": "chat",
        "timestamp": "2026-11-29T10:05:00Z",
        "model_name": "gpt-4o",
        "prompt_tokens": 1000,
        "completion_tokens": 100,
        **extra,
    }


def test_session_lifecycle_and_contract_answers(local_tracker: LocalTracker) -> None:
    c = local_tracker.client
    first = start(c, metadata={"endpoint": "/api/convos"})
    assert first.status_code == 201
    assert first.json()["status"] == "created"
    again = start(c, user_id="someone-else")
    assert again.status_code == 200
    assert again.json() == {"session_id": "conv-1", "status": "already_exists", "message": "Session already exists"}
    answer = c.post("/v1/track/interaction", json=chat(), headers={"Idempotency-Key": "aaaa"})
    assert answer.status_code == 202
    assert answer.json()["status"] == "accepted"
    assert answer.json()["interaction_id"].startswith("int_")
    end = c.post("/v1/track/session/end", json={"session_id": "conv-1", "end_time": "2026-11-29T11:15:00Z"})
    assert end.status_code == 200
    # gpt-4o: 1000 * 2.5 * 0.1 + 100 * 10 * 0.1 = 350 mc
    assert end.json() == {
        "session_id": "conv-1",
        "total_interactions": 1,
        "total_cost": {"micro_cents": 350, "display": "$0.0035", "currency": "USD"},
    }
    detail = c.get("/v1/sessions/conv-1").json()
    assert detail["user_id"] == "u1"  # the repeated start changed nothing
    assert detail["duration_minutes"] == 75
    assert detail["metadata"] == {"endpoint": "/api/convos"}
    from otel_analytics import session_trace_id

    assert detail["trace_id"] == format(session_trace_id("conv-1"), "032x")
    unknown = c.post("/v1/track/session/end", json={"session_id": "nope", "end_time": T0})
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "not_found"


def test_money_test_vectors(local_tracker: LocalTracker) -> None:
    c = local_tracker.client
    start(c, "conv-new-session")
    for parts in ({"ai_tokens_cost_mc": 4500}, {"compute_time_cost_mc": 8400}):
        costs = {"ai_tokens_cost_mc": 0, "db_ops_cost_mc": 0, "api_calls_cost_mc": 0, "compute_time_cost_mc": 0} | parts
        body = {
            "session_id": "conv-new-session",
            "user_id": "u1",
            "type": "cost-event",
            "timestamp": T0,
            "costs": costs,
        }
        assert c.post("/v1/track/interaction", json=body).status_code == 202
    end = c.post("/v1/track/session/end", json={"session_id": "conv-new-session", "end_time": T0}).json()
    assert end["total_cost"] == {"micro_cents": 12900, "display": "$0.1290", "currency": "USD"}
    # 1,000,000 prompt tokens of a model at $3/M = 300000 mc.
    body = chat(
        "conv-new-session", model_name="claude-3-5-sonnet-20241022", prompt_tokens=1_000_000, completion_tokens=0
    )
    assert c.post("/v1/track/interaction", json=body).status_code == 202
    rows = c.get("/v1/sessions/conv-new-session/interactions", params={"type": "chat"}).json()["interactions"]
    assert rows[0]["total_cost"] == {"micro_cents": 300000, "display": "$3.0000", "currency": "USD"}
    assert rows[0]["cost_breakdown"]["ai_tokens"]["micro_cents"] == 300000
    assert rows[0]["token_count"] == 1_000_000
    pricing = local_tracker.rows(
        "SELECT provider, token_kind, usd_per_million FROM pricing "
        "WHERE model = 'claude-3-5-sonnet-20241022' ORDER BY token_kind"
    )
    assert ("anthropic", "input", 3.0) in pricing
    assert ("anthropic", "output", 15.0) in pricing


def test_unknown_model_costs_zero_and_is_flagged(local_tracker: LocalTracker) -> None:
    c = local_tracker.client
    assert c.post("/v1/track/interaction", json=chat(model_name="our-private-llm")).status_code == 202
    (row,) = c.get("/v1/sessions/conv-1/interactions").json()["interactions"]
    assert row["total_cost"]["micro_cents"] == 0
    assert row["metadata"]["pricing"] == "unknown_model"


def test_interaction_of_an_unknown_session_creates_it(local_tracker: LocalTracker) -> None:
    c = local_tracker.client
    assert c.post("/v1/track/interaction", json=chat("session-1700000000000-abcdefghi", "u7")).status_code == 202
    session = c.get("/v1/sessions/session-1700000000000-abcdefghi").json()
    assert (session["user_id"], session["total_interactions"]) == ("u7", 1)
    assert session["start_time"] == "2026-11-29T10:05:00.000Z"


def test_idempotency_key_stores_one_row(local_tracker: LocalTracker) -> None:
    c = local_tracker.client
    ids = {
        c.post("/v1/track/interaction", json=chat(), headers={"Idempotency-Key": "k1"}).json()["interaction_id"]
        for _ in range(3)
    }
    assert len(ids) == 1
    batch = {
        "interactions": [
            chat(metadata={"span_id": "s1"}),
            chat(metadata={"span_id": "s1"}),
            chat(metadata={"span_id": "s2"}),
        ]
    }
    assert c.post("/v1/track/interaction/batch", json=batch).status_code == 202
    assert c.post("/v1/track/interaction/batch", json=batch).status_code == 202
    assert local_tracker.rows("SELECT COUNT(*) FROM interactions") == [(3,)]
    assert c.get("/v1/sessions/conv-1").json()["total_interactions"] == 3


@pytest.mark.parametrize(
    ("body", "message", "details"),
    [
        (
            {k: v for k, v in chat().items() if k != "session_id"},
            "Missing required field: session_id",
            {"field": "session_id"},
        ),
        (
            chat(type="x"),
            "Invalid interaction type: x",
            {"field": "type", "value": "x", "allowed_values": ["chat", "db", "api", "cost-event"]},
        ),
        (
            {k: v for k, v in chat().items() if k != "model_name"},
            "model_name required for chat interactions",
            {"field": "model_name", "type": "chat"},
        ),
        (
            chat(prompt_tokens=-1),
            "Invalid prompt_tokens: must be an integer from 0 to 2**53",
            {"field": "prompt_tokens"},
        ),
        (
            chat(prompt_tokens="12"),
            "Invalid prompt_tokens: must be an integer from 0 to 2**53",
            {"field": "prompt_tokens"},
        ),
        (
            chat(prompt_tokens=1.5),
            "Invalid prompt_tokens: must be an integer from 0 to 2**53",
            {"field": "prompt_tokens"},
        ),
        (chat(type="db", db_read_ops=1), "Invalid prompt_tokens: only for chat interactions", None),
        (chat(api_call_count=0), "Invalid api_call_count: must be an integer from 1 to 2**53", None),
        (chat(timestamp="yesterday"), "Invalid timestamp: must be an ISO-8601 UTC timestamp", None),
        (chat(timestamp="2026-11-29T10:00:00"), "Invalid timestamp: the timestamp needs a time zone (Z for UTC)", None),
        (chat(timestamp="1970-01-01T00:00:00Z"), "Invalid timestamp: out of range (2000 to 2099)", None),
        (chat(session_id="x" * 257), "Invalid session_id: longer than 256 characters", None),
        (chat(status="done"), "Invalid status: done", None),
        (chat(costs={"ai_tokens_cost_mc": -1}), "Invalid ai_tokens_cost_mc: must be an integer from 0 to 2**53", None),
        (chat(costs={"tip_mc": 1}), "Unknown field: tip_mc", None),
        (chat(metadata=[1]), "Invalid metadata: must be a JSON object", None),
        (chat(extra_field=1), "Unknown field: extra_field", None),
        ([chat()], "Request body must be a JSON object", None),
    ],
)
def test_validation_errors_use_the_contract_body(
    local_tracker: LocalTracker, body: Any, message: str, details: dict[str, Any] | None
) -> None:
    answer = local_tracker.client.post("/v1/track/interaction", json=body)
    assert answer.status_code == 400
    payload = answer.json()
    assert payload["error"] == "invalid_request"
    assert payload["message"] == message
    if details is not None:
        assert payload["details"] == details
    assert local_tracker.rows("SELECT COUNT(*) FROM interactions") == [(0,)]


def test_malformed_and_oversized_bodies(local_tracker: LocalTracker) -> None:
    c = local_tracker.client
    for raw in (b"{not json", b'{"session_id": NaN}', b"[" * 100_000 + b"]" * 100_000):
        answer = c.post("/v1/track/session/start", content=raw, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400, raw[:20]
        assert answer.json()["error"] == "invalid_request"
    huge = c.post("/v1/track/interaction", json=chat(metadata={"blob": "x" * (2 << 20)}))
    assert huge.status_code == 413
    assert huge.json()["error"] == "payload_too_large"

    def chunks() -> Any:  # no Content-Length: the limit still holds while reading
        for _ in range(40):
            yield b"x" * 65536

    assert c.post("/v1/track/interaction", content=chunks()).status_code == 413


@pytest.mark.anyio
async def test_a_content_length_that_int_cannot_read_is_no_500(local_tracker: LocalTracker) -> None:
    # uvicorn refuses such a header itself; another ASGI server may pass it on: the body is counted.
    transport = httpx.ASGITransport(app=local_tracker.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tracker") as client:
        for declared in ("9" * 5000, "twelve"):
            answer = await client.post("/v1/track/session/start", content=b"[]", headers={"Content-Length": declared})
            assert answer.status_code == 400, (declared[:10], answer.text[:200])
            assert answer.json()["error"] == "invalid_request"


def test_batch_is_all_or_nothing(local_tracker: LocalTracker) -> None:
    c = local_tracker.client
    bad = c.post("/v1/track/interaction/batch", json={"interactions": [chat(), chat(prompt_tokens=-5)]})
    assert bad.status_code == 400
    assert bad.json()["details"]["index"] == 1
    assert bad.json()["message"].startswith("interactions[1]: ")
    assert local_tracker.rows("SELECT COUNT(*) FROM interactions") == [(0,)]
    for items in ([], [chat()] * 101):
        assert c.post("/v1/track/interaction/batch", json={"interactions": items}).status_code == 400
    good = c.post("/v1/track/interaction/batch", json={"interactions": [chat(), chat("conv-2", "u2")]})
    assert good.status_code == 202
    assert good.json()["count"] == 2
    assert local_tracker.rows("SELECT COUNT(*) FROM sessions") == [(2,)]


def test_unknown_routes_and_methods_answer_contract_bodies(local_tracker: LocalTracker) -> None:
    c = local_tracker.client
    missing = c.get("/v2/nothing")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    wrong = c.get("/v1/track/interaction")
    assert (wrong.status_code, wrong.json()["error"]) == (405, "invalid_request")


def test_health(local_tracker: LocalTracker) -> None:
    body = local_tracker.client.get("/health").json()
    assert body["status"] == "ok"
    assert body["database"]["status"] == "connected"
    assert body["database"]["latency_ms"] >= 0


def test_token_auth_and_user_scoped_reads(tmp_path: Any) -> None:
    tracker = LocalTracker(
        str(tmp_path / "a.db"), token="admin-token", user_tokens={"alice-token": "alice", "bob-token": "bob"}
    )
    try:
        c = tracker.client
        assert c.get("/health").status_code == 200  # no auth on health
        for path, method in (
            ("/v1/track/session/start", "POST"),
            ("/v1/sessions", "GET"),
            ("/v1/stats/summary", "GET"),
            ("/v1/traces", "POST"),
        ):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "admin-token"}):
                answer = c.request(method, path, headers=headers, json={})
                assert answer.status_code == 401, (path, headers)
                assert answer.json()["error"] == "unauthorized"
        admin = {"Authorization": "Bearer admin-token"}
        for user in ("alice", "bob"):
            assert (
                c.post(
                    "/v1/track/session/start",
                    headers=admin,
                    json={"session_id": f"conv-{user}", "user_id": user, "start_time": T0},
                ).status_code
                == 201
            )
            assert c.post("/v1/track/interaction", headers=admin, json=chat(f"conv-{user}", user)).status_code == 202
        alice = {"Authorization": "Bearer alice-token"}
        assert c.post("/v1/track/interaction", headers=alice, json=chat("conv-alice", "alice")).status_code == 401
        listed = c.get("/v1/sessions", headers=alice, params={"user_id": "bob"}).json()
        assert [s["id"] for s in listed["data"]] == ["conv-alice"]
        assert c.get("/v1/sessions/conv-bob", headers=alice).status_code == 404
        assert c.get("/v1/sessions/conv-bob/interactions", headers=alice).status_code == 404
        assert c.get("/v1/sessions/conv-alice", headers=alice).status_code == 200
        summary = c.get("/v1/stats/summary", headers=alice, params={"user_id": "bob"}).json()
        assert (summary["total_sessions"], summary["total_interactions"]) == (1, 1)
        daily = c.get(
            "/v1/stats/daily",
            headers=alice,
            params={"start_date": "2026-11-01", "end_date": "2026-11-30", "user_id": "bob"},
        ).json()
        assert [d["interactions_count"] for d in daily["daily_stats"]] == [1]
        by_user = c.get("/v1/stats/by-user", headers=alice).json()
        assert [u["user_id"] for u in by_user["users"]] == ["alice"]
        everyone = c.get("/v1/stats/by-user", headers=admin).json()
        assert sorted(u["user_id"] for u in everyone["users"]) == ["alice", "bob"]
    finally:
        tracker.close()


def test_sessions_filters_sort_and_pagination(local_tracker: LocalTracker) -> None:
    c = local_tracker.client
    for n in range(7):
        body = {"session_id": f"conv-{n}", "user_id": "u1" if n % 2 else "u2", "start_time": f"2026-11-2{n}T10:00:00Z"}
        assert c.post("/v1/track/session/start", json=body).status_code == 201
        for _ in range(n):
            assert c.post("/v1/track/interaction", json=chat(f"conv-{n}", body["user_id"])).status_code == 202
    c.post("/v1/track/session/end", json={"session_id": "conv-3", "end_time": "2026-11-23T10:30:00Z"})
    page = c.get("/v1/sessions", params={"limit": 3, "offset": 0}).json()
    assert [s["id"] for s in page["data"]] == ["conv-6", "conv-5", "conv-4"]
    assert page["pagination"] == {"total": 7, "limit": 3, "offset": 0, "has_more": True}
    last = c.get("/v1/sessions", params={"limit": 3, "offset": 6}).json()
    assert [s["id"] for s in last["data"]] == ["conv-0"]
    assert last["pagination"]["has_more"] is False
    by_cost = c.get("/v1/sessions", params={"sort": "total_cost_desc", "limit": 2}).json()["data"]
    assert [s["id"] for s in by_cost] == ["conv-6", "conv-5"]
    assert by_cost[0]["total_cost"]["micro_cents"] == 6 * 350
    mine = c.get("/v1/sessions", params={"user_id": "u1", "sort": "start_time_asc"}).json()["data"]
    assert [s["id"] for s in mine] == ["conv-1", "conv-3", "conv-5"]
    window = c.get(
        "/v1/sessions", params={"start_time_min": "2026-11-22T00:00:00Z", "start_time_max": "2026-11-24T00:00:00Z"}
    ).json()["data"]
    assert sorted(s["id"] for s in window) == ["conv-2", "conv-3"]
    active = c.get("/v1/sessions", params={"active_only": "true"}).json()["pagination"]["total"]
    assert active == 6
    ended = c.get("/v1/sessions/conv-3").json()
    assert ended["duration_minutes"] == 30
    for params in (
        {"limit": 0},
        {"limit": 101},
        {"offset": -1},
        {"offset": 2**63},  # past what SQLite binds: was a 500 (found by test_fuzz_tracker)
        {"offset": "9" * 5000},  # past what int() parses
        {"limit": "²"},  # a digit to str.isdigit, not to int()
        {"sort": "random"},
        {"active_only": "maybe"},
        {"start_time_min": "tuesday"},
    ):
        answer = c.get("/v1/sessions", params=params)
        assert answer.status_code == 400, params
        assert answer.json()["error"] == "invalid_request"
    assert c.get("/v1/sessions", params={"limit": "003", "offset": "0" * 30}).json()["pagination"]["limit"] == 3
    far = c.get("/v1/sessions", params={"offset": 2**63 - 1}).json()  # the largest offset: an empty page
    assert far["data"] == [] and far["pagination"]["has_more"] is False


def test_stats(local_tracker: LocalTracker) -> None:
    c = local_tracker.client
    start(c, "conv-a", "u1")
    start(c, "conv-b", "u2")
    c.post("/v1/track/interaction", json=chat("conv-a", "u1"))
    c.post("/v1/track/interaction", json=chat("conv-a", "u1", timestamp="2026-11-30T09:00:00Z"))
    c.post("/v1/track/interaction", json=chat("conv-b", "u2"))
    summary = c.get("/v1/stats/summary").json()
    assert summary["total_sessions"] == 2
    assert summary["total_interactions"] == 3
    assert summary["unique_users"] == 2
    assert summary["total_cost"]["micro_cents"] == 1050
    assert summary["avg_cost_per_session"]["micro_cents"] == 525
    assert summary["avg_interactions_per_session"] == 1.5
    assert summary["cost_breakdown"]["ai_tokens"]["micro_cents"] == 1050
    daily = c.get("/v1/stats/daily", params={"start_date": "2026-11-29", "end_date": "2026-11-30"}).json()
    assert [(d["date"], d["interactions_count"], d["sessions_count"]) for d in daily["daily_stats"]] == [
        ("2026-11-29", 2, 2),
        ("2026-11-30", 1, 1),
    ]
    one_day = c.get("/v1/stats/daily", params={"start_date": "2026-11-30", "end_date": "2026-11-30"}).json()
    assert len(one_day["daily_stats"]) == 1
    by_user = c.get("/v1/stats/by-user").json()["users"]
    assert [(u["user_id"], u["interactions_count"]) for u in by_user] == [("u1", 2), ("u2", 1)]
    assert c.get("/v1/stats/daily").status_code == 400  # dates are required
    wrong = c.get("/v1/stats/summary", params={"start_date": "2026-12-01", "end_date": "2026-11-01"})
    assert wrong.json()["message"] == "Invalid date range: start_date must be before end_date"


def test_sql_metacharacters_are_just_data(local_tracker: LocalTracker) -> None:
    c = local_tracker.client
    nasty = "conv'; DROP TABLE sessions; --"
    assert c.post("/v1/track/interaction", json=chat(nasty, "u' OR '1'='1")).status_code == 202
    assert c.get(f"/v1/sessions/{nasty}").json()["user_id"] == "u' OR '1'='1"
    assert c.get("/v1/sessions", params={"user_id": "u' OR '1'='1"}).json()["pagination"]["total"] == 1
    assert c.get("/v1/sessions", params={"user_id": "x' OR '1'='1"}).json()["pagination"]["total"] == 0


def test_store_migrations_are_versioned_and_idempotent(tmp_path: Any) -> None:
    from otel_analytics.tracker.store import Store

    path = str(tmp_path / "m.db")
    Store(path).close()
    Store(path).close()  # applying again changes nothing
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as db, db:
        assert db.execute("PRAGMA user_version").fetchone() == (3,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {
        "sessions",
        "interactions",
        "pricing",
        "usage_hourly",
        "usage_user_daily",
        "latency_daily",
        "sessions_daily",
    } <= tables


def test_a_version_1_database_is_upgraded_with_its_rows_and_rules(tmp_path: Any) -> None:
    import sqlite3
    from importlib import resources

    from otel_analytics.tracker import validation
    from otel_analytics.tracker.store import Store, _statements

    path = str(tmp_path / "v1.db")
    initial = resources.files("otel_analytics.tracker.migrations").joinpath("0001_initial.sql").read_text()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        for statement in _statements(initial):
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        db.execute("INSERT INTO sessions (id, user_id, start_time, trace_id) VALUES ('s', 'u', 't', 'x')")
        db.execute(
            "INSERT INTO interactions (id, idempotency_key, session_id, user_id, timestamp, type, total_cost_mc) "
            "VALUES ('int_1', 'k1', 's', 'u', '2026-11-29T10:00:00.000Z', 'chat', 7)"
        )
    store = Store(path)
    try:
        assert store.add_interactions([(validation.interaction(chat("s", "u")), "k1")]) == ["int_1"]  # key kept
        (row,) = store.session_interactions("s", None)
        assert row["id"] == "int_1"
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        assert db.execute("PRAGMA user_version").fetchone() == (3,)
        # Version 3 rolled the old rows up, and the session's totals, for the dashboard.
        assert db.execute("SELECT interactions, cost_mc FROM usage_hourly").fetchall() == [(1, 7)]
        assert db.execute("SELECT last_activity FROM sessions").fetchall() == [("2026-11-29T10:00:00.000Z",)]
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'interactions'")}
        assert {"interactions_session_time", "interactions_user_time", "interactions_time"} <= indexes
        for kind, status in (("chatty", "completed"), ("chat", "done")):
            with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
                db.execute(
                    "INSERT INTO interactions (id, session_id, user_id, timestamp, type, status) "
                    "VALUES ('int_2', 's', 'u', 't', ?, ?)",
                    (kind, status),
                )
        # The reason for version 2: an IN list in a CHECK fills a temporary table for every row
        # inserted (half the ingest rate); the comparisons it was rewritten as need none.
        program = db.execute(
            "EXPLAIN INSERT INTO interactions (id, session_id, user_id, timestamp, type, status) "
            "VALUES ('int_3', 's', 'u', 't', 'chat', 'completed')"
        ).fetchall()
        assert "OpenEphemeral" not in {step[1] for step in program}


def test_every_interaction_has_its_session(local_tracker: LocalTracker) -> None:
    c = local_tracker.client
    c.post("/v1/track/interaction/batch", json={"interactions": [chat(f"conv-{n}", "u") for n in range(30)]})
    c.post("/v1/track/interaction", json=chat("conv-single", "u"))
    assert local_tracker.rows("PRAGMA foreign_key_check") == []
    orphans = local_tracker.rows("SELECT COUNT(*) FROM interactions WHERE session_id NOT IN (SELECT id FROM sessions)")
    assert orphans == [(0,)]


def test_writes_reach_the_database_file_without_a_committing_request_checkpointing(tmp_path: Any) -> None:
    """The checkpoint thread copies the WAL into the database file while requests only commit."""
    import sqlite3
    import time

    from otel_analytics.tracker.store import Store

    path = str(tmp_path / "checkpointed.db")
    store = Store(path)
    try:
        store.start_session(
            {"session_id": "conv-wal", "user_id": "u1", "start_time": "2026-11-29T10:00:00.000Z", "metadata": {}}
        )

        def in_main_file() -> int:
            # immutable=1 reads the database file alone, ignoring the WAL
            with (
                contextlib.closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as db,
                db,
            ):  # commits, then closes
                try:
                    return int(db.execute("SELECT COUNT(*) FROM sessions WHERE id = 'conv-wal'").fetchone()[0])
                except sqlite3.DatabaseError:
                    return 0

        deadline = time.monotonic() + 10
        while not in_main_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert in_main_file() == 1
    finally:
        store.close()


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2026-11-29T10:15:00.123Z", "2026-11-29T10:15:00.123Z"),  # the stored form, kept as is
        ("2026-11-29T10:15:00Z", "2026-11-29T10:15:00.000Z"),
        ("2026-11-29T11:15:00.123+01:00", "2026-11-29T10:15:00.123Z"),
        ("2026-11-29T10:15:00.123456Z", "2026-11-29T10:15:00.123Z"),
    ],
)
def test_timestamps_are_stored_in_one_form(given: str, stored: str) -> None:
    from otel_analytics.tracker.validation import parse_timestamp

    assert parse_timestamp(given, "timestamp") == stored


@pytest.mark.parametrize(
    "bad", ["2026-02-30T10:15:00.123Z", "1999-12-31T23:59:59.999Z", "2100-01-01T00:00:00.000Z", "2026-11-29T10:15:00"]
)
def test_impossible_or_ambiguous_timestamps_are_refused(bad: str) -> None:
    from otel_analytics.tracker.validation import ContractError, parse_timestamp

    with pytest.raises(ContractError):
        parse_timestamp(bad, "timestamp")


def test_the_served_app_closes_its_database_when_it_stops(tmp_path: Any) -> None:
    import sqlite3

    from starlette.testclient import TestClient

    from otel_analytics.tracker.app import TrackerConfig, create_app

    app = create_app(TrackerConfig(db_path=str(tmp_path / "closed.db")))
    with TestClient(app) as client:  # runs the lifespan: start-up, then shutdown on exit
        assert client.get("/health").json()["status"] == "ok"
    with pytest.raises(sqlite3.ProgrammingError):
        app.state.tracker.store._db.execute("SELECT 1")
