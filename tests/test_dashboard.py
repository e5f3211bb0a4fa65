"""The dashboard served by the local tracker, over real HTTP: its figures are the stored ones
(the rolled-up tables agree with the interactions, whatever was written and however), the
session list pages through everything once in every sort, exports carry the page's filters,
and access is what the tracker's tokens allow. The browser tests are in test_dashboard_browser.py.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.requests import Request

from bench.dashboard_data import populate
from otel_analytics.tracker.dashboard.access import COOKIE, CSP, MAX_SIGN_INS, SIGN_IN_SECONDS, Access, Viewer
from otel_analytics.tracker.store import Store
from tests.conftest import LocalTracker

NOW = datetime.now(UTC)
XSS = "<img src=x onerror=alert(1)>"


def chat(session_id: str, user_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "user_id": user_id,
        "type": "chat",
        "timestamp": NOW.isoformat(),
        "model_name": "gpt-4o-mini",
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "compute_duration_ms": 420.0,
        "metadata": {"provider": "openai", "time_to_first_chunk_ms": 180.0},
        **extra,
    }


def rollup_mismatches(path: str) -> list[str]:
    """Where the rolled-up tables differ from what the sessions and interactions add up to."""
    checks = {
        "usage_hourly": (
            "SELECT hour, model, provider, type, interactions, failures, unpriced, prompt_tokens, completion_tokens, "
            "cost_mc FROM usage_hourly WHERE interactions > 0",
            "SELECT substr(timestamp, 1, 13), COALESCE(model_name, ''), COALESCE(json_extract(metadata, '$.provider'), ''),"
            " type, COUNT(*), SUM(status != 'completed'), "
            "SUM(COALESCE(json_extract(metadata, '$.pricing') = 'unknown_model', 0)), COALESCE(SUM(prompt_tokens), 0), "
            "COALESCE(SUM(completion_tokens), 0), SUM(total_cost_mc) FROM interactions GROUP BY 1, 2, 3, 4",
        ),
        "usage_user_daily interactions": (
            "SELECT day, user_id, interactions, prompt_tokens, completion_tokens, cost_mc FROM usage_user_daily "
            "WHERE interactions > 0",
            "SELECT substr(timestamp, 1, 10), user_id, COUNT(*), COALESCE(SUM(prompt_tokens), 0), "
            "COALESCE(SUM(completion_tokens), 0), SUM(total_cost_mc) FROM interactions GROUP BY 1, 2",
        ),
        "usage_user_daily sessions": (
            "SELECT day, user_id, sessions FROM usage_user_daily WHERE sessions > 0",
            "SELECT substr(start_time, 1, 10), user_id, COUNT(*) FROM sessions GROUP BY 1, 2",
        ),
        "sessions_daily": (
            "SELECT day, sessions FROM sessions_daily",
            "SELECT substr(start_time, 1, 10), COUNT(*) FROM sessions GROUP BY 1",
        ),
        "latency_daily": (
            "SELECT day, model, bucket, count FROM latency_daily WHERE measure = 'duration'",
            "SELECT substr(timestamp, 1, 10), model_name, CASE WHEN duration_ms <= 10 THEN 0 WHEN duration_ms <= 25 "
            "THEN 1 WHEN duration_ms <= 50 THEN 2 WHEN duration_ms <= 100 THEN 3 WHEN duration_ms <= 250 THEN 4 "
            "WHEN duration_ms <= 500 THEN 5 WHEN duration_ms <= 1000 THEN 6 WHEN duration_ms <= 2500 THEN 7 "
            "WHEN duration_ms <= 5000 THEN 8 WHEN duration_ms <= 10000 THEN 9 WHEN duration_ms <= 30000 THEN 10 "
            "WHEN duration_ms <= 60000 THEN 11 ELSE 12 END, COUNT(*) FROM interactions "
            "WHERE type = 'chat' AND duration_ms IS NOT NULL AND model_name IS NOT NULL GROUP BY 1, 2, 3",
        ),
        "session totals": (
            "SELECT id, total_interactions, prompt_tokens, completion_tokens, total_cost_mc, last_activity "
            "FROM sessions WHERE total_interactions > 0",
            "SELECT session_id, COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), "
            "SUM(total_cost_mc), MAX(timestamp) FROM interactions GROUP BY 1",
        ),
    }
    wrong = []
    with contextlib.closing(sqlite3.connect(path)) as db:
        for name, (rolled, raw) in checks.items():
            if sorted(db.execute(rolled).fetchall()) != sorted(db.execute(raw).fetchall()):
                wrong.append(name)
    return wrong


@pytest.fixture
def populated(tmp_path: Path) -> Iterator[LocalTracker]:
    """A tracker with 260 generated sessions of 40 users over 30 days, and a few of its own."""
    tracker = LocalTracker(str(tmp_path / "dash.db"))
    try:
        populate(tracker.store, 260, users=40, now=NOW)
        yield tracker
    finally:
        tracker.close()


def test_the_rollups_agree_with_every_way_of_writing(tmp_path: Path) -> None:
    tracker = LocalTracker(str(tmp_path / "w.db"))
    try:
        c = tracker.client
        populate(tracker.store, 120, users=9, now=NOW)
        # A started session, started again (no second count), a session its interactions create, a
        # batch sent twice (its repeats stored once), one item alone, a failure, an unpriced model.
        for _ in range(2):
            c.post("/v1/track/session/start", json={"session_id": "a", "user_id": "u", "start_time": NOW.isoformat()})
        items = [chat("a", "u", metadata={"provider": "openai", "span_id": f"{n:016x}"}) for n in range(5)]
        items.append(chat("implicit", "v", status="failed", metadata={"span_id": "f" * 16}))
        items.append(chat("implicit", "v", model_name="in-house-llm", metadata={"span_id": "e" * 16}))
        for _ in range(2):
            assert c.post("/v1/track/interaction/batch", json={"interactions": items}).status_code == 202
        assert c.post("/v1/track/interaction", json=chat("a", "u"), headers={"Idempotency-Key": "k"}).status_code == 202
        assert c.post("/v1/track/interaction", json=chat("a", "u"), headers={"Idempotency-Key": "k"}).status_code == 202
        c.post("/v1/track/session/end", json={"session_id": "a", "end_time": NOW.isoformat()})
        assert rollup_mismatches(tracker.db_path) == []
        # The overview says what the rows say.
        overview = c.get("/?days=30&format=json").json()
        (sessions,) = tracker.rows("SELECT COUNT(*) FROM sessions WHERE start_time >= ?", overview["period"]["start"])
        assert overview["totals"]["sessions"] == sessions[0]
        assert {"model": "in-house-llm", "interactions": 1} in overview["unpriced"]
    finally:
        tracker.close()


def test_an_older_database_is_rolled_up_when_it_is_upgraded(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    store = Store(path)
    populate(store, 80, users=7, now=NOW)
    store.close()
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # back to version 2, rollups gone
        for table in ("usage_hourly", "usage_user_daily", "latency_daily", "sessions_daily"):
            db.execute(f"DROP TABLE {table}")
        for index in ("sessions_start_id", "sessions_cost_id", "sessions_user_start_id", "sessions_user_cost_id"):
            db.execute(f"DROP INDEX {index}")
        db.execute("DROP INDEX interactions_session_model")
        db.execute("CREATE INDEX sessions_user_start ON sessions (user_id, start_time DESC)")
        db.execute("CREATE INDEX sessions_start ON sessions (start_time DESC)")
        db.execute("CREATE INDEX sessions_cost ON sessions (total_cost_mc DESC)")
        for column in ("prompt_tokens", "completion_tokens", "last_activity"):
            db.execute(f"ALTER TABLE sessions DROP COLUMN {column}")
        db.execute("PRAGMA user_version = 2")
    Store(path).close()
    assert rollup_mismatches(path) == []


def _walk(c: httpx.Client, first: str) -> tuple[list[str], str]:
    """Follow "next" from ``first`` to the end; the ids seen and the last page's URL."""
    seen, url = [], first
    for _ in range(100):
        page = c.get(url)
        assert page.status_code == 200
        seen += re.findall(r'class="session-link">([^<]*)</a>', page.text)
        following = re.search(r'id="page-next" href="([^"]*)"', page.text)
        if following is None:
            return seen, url
        url = "/sessions" + following.group(1).replace("&amp;", "&")
    raise AssertionError("more than 100 pages")


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("time", "start_time DESC, id DESC"),
        ("time_asc", "start_time, id"),
        ("cost", "total_cost_mc DESC, id DESC"),
        ("cost_asc", "total_cost_mc, id"),
    ],
)
def test_the_session_list_pages_through_everything_once_both_ways(
    populated: LocalTracker, sort: str, order: str
) -> None:
    c = populated.client
    expected = [row[0] for row in populated.rows(f"SELECT id FROM sessions ORDER BY {order}")]
    forward, last = _walk(c, f"/sessions?sort={sort}")
    assert forward == expected
    # Back from the last page, with "previous", to the first.
    backward: list[str] = []
    url: str | None = last
    while url is not None:
        page = c.get(url)
        backward = re.findall(r'class="session-link">([^<]*)</a>', page.text) + backward
        previous = re.search(r'id="page-prev" href="([^"]*)"', page.text)
        url = "/sessions" + previous.group(1).replace("&amp;", "&") if previous else None
    assert backward == expected
    assert c.get(f"/sessions?sort={sort}").text.count('id="page-prev"') == 0


def test_the_session_filters_match_the_rows(populated: LocalTracker) -> None:
    c = populated.client
    populated.rows("SELECT 1")  # the tracker's own writes are committed
    day = (NOW - timedelta(days=3)).strftime("%Y-%m-%d")
    cases = {
        "user=user-003": "user_id = 'user-003'",
        "model=gpt-4o": "id IN (SELECT session_id FROM interactions WHERE model_name = 'gpt-4o')",
        "q=session-00001": "id LIKE 'session-00001%'",
        f"from={day}&to={day}": f"substr(start_time, 1, 10) = '{day}'",
        f"user=user-003&from={day}": f"user_id = 'user-003' AND start_time >= '{day}'",
    }
    for query, where in cases.items():
        expected = [
            r[0] for r in populated.rows(f"SELECT id FROM sessions WHERE {where} ORDER BY total_cost_mc DESC, id DESC")
        ]
        seen, _ = _walk(c, f"/sessions?{query}&sort=cost")
        assert seen == expected, query
        count = re.search(r'data-total="sessions">([^<]*)<', c.get(f"/sessions?{query}").text)
        assert count is not None and count.group(1) == f"{len(expected):,}", query
        exported = c.get(f"/sessions?{query}&sort=cost&format=json").json()
        assert [s["id"] for s in exported["sessions"]] == expected and exported["complete"], query


def test_bad_filters_are_ignored_not_errors(populated: LocalTracker) -> None:
    c = populated.client
    for query in (
        "after=%%%",
        "after=WyJ4Il0",  # ["x"]: a list of one
        "before=" + "A" * 5000,
        "from=2026-02-30&to=yesterday",
        "sort=DROP TABLE sessions",
        "days=-1",
        "days=99999999999999999999",
        "q=%00",
        "format=xml",
    ):
        answer = c.get(f"/sessions?{query}")
        assert answer.status_code == 200, query
        assert c.get(f"/?{query}").status_code == 200, query
    assert populated.rows("SELECT COUNT(*) FROM sessions")[0][0] == 260


def test_exports_carry_the_figures_of_the_page(populated: LocalTracker) -> None:
    c = populated.client
    listed = c.get("/sessions?user=user-001&format=csv")
    assert listed.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(listed.text)))
    stored = populated.rows(
        "SELECT COUNT(*), SUM(total_cost_mc), SUM(prompt_tokens) FROM sessions WHERE user_id = 'user-001'"
    )[0]
    assert (len(rows), sum(int(r["cost_mc"]) for r in rows), sum(int(r["prompt_tokens"]) for r in rows)) == stored
    overview = c.get("/?days=30&format=json").json()
    by_model = list(csv.DictReader(io.StringIO(c.get("/?days=30&format=csv").text)))
    assert sum(int(r["cost_mc"]) for r in by_model) == overview["totals"]["cost_mc"]
    users = list(csv.DictReader(io.StringIO(c.get("/users?days=30&format=csv").text)))
    assert sum(int(r["cost_mc"]) for r in users) == overview["totals"]["cost_mc"]
    session = c.get("/sessions/session-0000005?format=json").json()
    assert session["session"]["cost_mc"] == sum(i["cost_mc"] for i in session["interactions"])
    api = c.get("/v1/sessions/session-0000005/interactions").json()["interactions"]
    assert [i["id"] for i in session["interactions"]] == [i["id"] for i in api]


def test_a_cell_a_spreadsheet_would_run_is_exported_as_text(local_tracker: LocalTracker) -> None:
    c = local_tracker.client
    for user in ('=HYPERLINK("http://x")', "+1", "@SUM(A1)", "-2"):
        c.post("/v1/track/interaction", json=chat(f"s{user}", user))
    rows = list(csv.DictReader(io.StringIO(c.get("/sessions?format=csv").text)))
    assert sorted(r["user_id"] for r in rows) == sorted(['\'=HYPERLINK("http://x")', "'+1", "'@SUM(A1)", "'-2"])


def test_every_user_string_is_text_on_every_page(local_tracker: LocalTracker) -> None:
    c = local_tracker.client
    c.post("/v1/track/session/start", json={"session_id": XSS, "user_id": XSS, "start_time": NOW.isoformat()})
    c.post("/v1/track/interaction", json=chat(XSS, XSS, model_name=XSS, metadata={"provider": XSS, XSS: XSS}))
    c.post("/v1/track/interaction", json=chat(XSS, XSS, model_name="</script><script>alert(1)</script>"))
    quoted = "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E"
    for path in ("/", "/?days=1", "/sessions", f"/sessions/{quoted}", "/users", f"/users/{quoted}"):
        page = c.get(path)
        assert page.status_code == 200, path
        assert "<img src=x" not in page.text and "<script>alert" not in page.text, path
        assert "&lt;img src=x onerror=alert(1)&gt;" in page.text, path


def test_security_headers_on_every_answer(local_tracker: LocalTracker) -> None:
    c = local_tracker.client
    for path in ("/", "/sessions", "/users", "/login", "/static/app.css", "/nowhere", "/v1/sessions", "/health"):
        answer = c.get(path, headers={"accept": "text/html"})
        assert answer.headers["content-security-policy"] == CSP, path
        assert answer.headers["x-content-type-options"] == "nosniff", path
    assert "script-src 'self';" in CSP and "unsafe-inline" not in CSP and "frame-ancestors 'none'" in CSP
    # A missing page: text for a browser, the contract's JSON body for an API client.
    assert c.get("/nowhere", headers={"accept": "text/html"}).headers["content-type"].startswith("text/plain")
    assert c.get("/nowhere").json()["error"] == "not_found"


def test_the_trace_link_follows_its_template(tmp_path: Path) -> None:
    tracker = LocalTracker(str(tmp_path / "t.db"), trace_url="http://localhost:16686/trace/{trace_id}")
    try:
        tracker.client.post("/v1/track/interaction", json=chat("conv-7", "u"))
        page = tracker.client.get("/sessions/conv-7").text
        from otel_analytics.ids import session_trace_id

        assert f'href="http://localhost:16686/trace/{session_trace_id("conv-7"):032x}"' in page
    finally:
        tracker.close()
    from otel_analytics.errors import ConfigurationError
    from otel_analytics.tracker.app import TrackerConfig, create_app

    for wrong in ("http://jaeger/trace/", "javascript:alert({trace_id})"):
        with pytest.raises(ConfigurationError, match="trace_id"):
            create_app(TrackerConfig(db_path=str(tmp_path / "x.db"), trace_url=wrong))


def test_the_version_changes_when_something_is_stored(local_tracker: LocalTracker) -> None:
    c = local_tracker.client
    before = c.get("/dashboard/version").json()["version"]
    assert c.get("/dashboard/version").json()["version"] == before
    c.post("/v1/track/interaction", json=chat("v", "u"))
    assert c.get("/dashboard/version").json()["version"] != before


def test_without_a_token_only_loopback_sees_the_dashboard(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from otel_analytics.tracker.app import TrackerConfig, create_app

    app = create_app(TrackerConfig(db_path=str(tmp_path / "l.db")))
    # The one client here not over a socket: a remote address cannot reach a loopback server.
    with TestClient(app, client=("192.0.2.7", 5000)) as remote:
        for path in ("/", "/sessions", "/users", "/sessions?format=csv", "/dashboard/version"):
            answer = remote.get(path)
            assert answer.status_code == 403 and "--token" in answer.text, path
        assert remote.get("/v1/sessions").status_code == 200  # the API is the tracker's, as before


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[LocalTracker]:
    tracker = LocalTracker(
        str(tmp_path / "g.db"), token="admin-secret", user_tokens={"alice-secret": "alice", "bob-secret": "bob"}
    )
    try:
        admin = {"Authorization": "Bearer admin-secret"}
        for user in ("alice", "bob"):
            for n in range(3):
                tracker.client.post("/v1/track/interaction", json=chat(f"{user}-{n}", user), headers=admin)
        yield tracker
    finally:
        tracker.close()


def _sign_in(tracker: LocalTracker, token: str, then: str = "/") -> httpx.Client:
    browser = httpx.Client(base_url=tracker.url, timeout=10)
    answer = browser.post("/login", data={"token": token, "next": then})
    assert answer.status_code == 303 and answer.headers["location"] == then
    return browser


def test_signing_in_once_keeps_a_strict_http_only_cookie(guarded: LocalTracker) -> None:
    anonymous = guarded.client
    first = anonymous.get("/sessions?user=alice")
    assert first.status_code == 303
    assert parse_qs(urlsplit(first.headers["location"]).query)["next"] == ["/sessions?user=alice"]
    wrong = anonymous.post("/login", data={"token": "guess", "next": "/"})
    assert wrong.status_code == 401 and "not one of this tracker" in wrong.text
    answer = anonymous.post("/login", data={"token": "admin-secret", "next": "/sessions"})
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie and "Secure" not in cookie
    assert "admin-secret" not in cookie  # the cookie is not the token
    behind_https = anonymous.post(
        "/login", data={"token": "admin-secret", "next": "/"}, headers={"x-forwarded-proto": "https"}
    )
    assert "Secure" in behind_https.headers["set-cookie"]
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        elsewhere = anonymous.post("/login", data={"token": "admin-secret", "next": target})
        assert elsewhere.headers["location"] == "/", target
    browser = _sign_in(guarded, "admin-secret")
    try:
        assert browser.get("/sessions").status_code == 200
        assert browser.post("/logout").status_code == 303
        browser.cookies.clear()
        assert browser.get("/sessions").status_code == 303
    finally:
        browser.close()


def test_a_user_token_sees_only_its_user_everywhere(guarded: LocalTracker) -> None:
    browser = _sign_in(guarded, "alice-secret")
    try:
        for path in ("/", "/sessions", "/sessions?user=bob", "/users", "/users/alice", "/?days=30"):
            page = browser.get(path)
            assert page.status_code == 200 and "bob" not in page.text and "alice" in page.text, path
        assert browser.get("/sessions/bob-0").status_code == 404
        assert browser.get("/users/bob").status_code == 404
        for export in ("/sessions?format=csv", "/sessions?user=bob&format=json", "/users?format=csv", "/?format=json"):
            assert "bob" not in browser.get(export).text, export
        assert len(browser.get("/sessions?format=json").json()["sessions"]) == 3
        # The same token on the API: alice's data only.
        api = {"Authorization": "Bearer alice-secret"}
        assert guarded.client.get("/v1/sessions/bob-0", headers=api).status_code == 404
        assert {s["user_id"] for s in guarded.client.get("/v1/sessions", headers=api).json()["data"]} == {"alice"}
        # A script may use the token as a bearer header instead of the cookie.
        script = guarded.client.get("/sessions?format=json", headers={"Authorization": "Bearer bob-secret"})
        assert {s["user_id"] for s in script.json()["sessions"]} == {"bob"}
    finally:
        browser.close()


def test_the_tracker_cli_prints_the_dashboard_url(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.helpers import clean_environ, free_port

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otel_analytics.cli",
            "tracker",
            "serve",
            "--port",
            str(port),
            "--db",
            str(tmp_path / "c.db"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_environ(),
    )
    try:
        assert server.stdout is not None
        lines = [server.stdout.readline() for _ in range(2)]
        assert lines[1].strip() == f"dashboard: http://localhost:{port}/"
    finally:
        server.terminate()
        server.communicate(timeout=10)


def test_a_new_store_has_the_indexes_the_pages_read(tmp_path: Path) -> None:
    """Every list query is a search of an index, never a scan of a table (the plans say so)."""
    store = Store(str(tmp_path / "i.db"))
    try:
        plans = {
            "sessions by time": "SELECT * FROM sessions ORDER BY start_time DESC, id DESC LIMIT 51",
            "sessions by cost": "SELECT * FROM sessions ORDER BY total_cost_mc DESC, id DESC LIMIT 51",
            "a user's by cost": "SELECT * FROM sessions WHERE user_id = 'u' ORDER BY total_cost_mc DESC, id DESC LIMIT 51",
            "a user's by time": "SELECT * FROM sessions WHERE user_id = 'u' ORDER BY start_time, id LIMIT 51",
            "after a key": "SELECT * FROM sessions WHERE (start_time, id) < ('t', 'x') ORDER BY start_time DESC, id DESC LIMIT 51",
        }
        for name, sql in plans.items():
            plan = " ".join(row[3] for row in store.read(f"EXPLAIN QUERY PLAN {sql}"))
            assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (name, plan)
            assert "TEMP B-TREE" not in plan, (name, plan)
    finally:
        store.close()


def test_a_sign_in_expires_and_signing_out_ends_it_on_the_tracker(guarded: LocalTracker) -> None:
    answer = guarded.client.post("/login", data={"token": "admin-secret", "next": "/"})
    assert f"Max-Age={12 * 3600}" in answer.headers["set-cookie"]
    browser = _sign_in(guarded, "admin-secret")
    try:
        copied = dict(browser.cookies)
        assert browser.post("/logout").status_code == 303
        # The cookie copied before signing out is refused: the sign-in ended on the tracker.
        with httpx.Client(base_url=guarded.url, cookies=copied, timeout=10) as elsewhere:
            replay = elsewhere.get("/sessions")
        assert replay.status_code == 303 and replay.headers["location"].startswith("/login")
    finally:
        browser.close()
    with (
        contextlib.closing(_sign_in(guarded, "admin-secret")) as one,
        contextlib.closing(_sign_in(guarded, "admin-secret")) as other,
    ):
        assert one.cookies[COOKIE] != other.cookies[COOKIE]  # each sign-in its own


def test_sign_ins_last_their_time_and_are_bounded() -> None:
    now = [1000.0]
    access = Access([("admin-secret", None), ("alice-secret", "alice")], clock=lambda: now[0])

    def viewer(cookie: str | None) -> Viewer | None:
        headers = [(b"cookie", f"{COOKIE}={cookie}".encode())] if cookie else []
        return access.viewer(Request({"type": "http", "headers": headers, "client": ("10.0.0.9", 1)}))

    assert access.sign_in("guess") is None
    alice = access.sign_in("alice-secret")
    assert alice is not None and "alice-secret" not in alice
    found = viewer(alice)
    assert found is not None and found.user_id == "alice"
    now[0] += SIGN_IN_SECONDS - 1
    assert viewer(alice) is not None
    now[0] += 2
    assert viewer(alice) is None and viewer("not-a-sign-in") is None
    first = access.sign_in("admin-secret")
    for _ in range(MAX_SIGN_INS):
        access.sign_in("admin-secret")
    assert viewer(first) is None  # the oldest forgotten past the bound


def test_a_sign_in_or_out_posted_from_another_site_is_refused(guarded: LocalTracker) -> None:
    form = {"token": "admin-secret", "next": "/"}
    for headers in (
        {"origin": "https://evil.example"},
        {"sec-fetch-site": "cross-site", "origin": "null"},
        {"sec-fetch-site": "same-site", "origin": "null"},  # a sibling subdomain
    ):
        forged = guarded.client.post("/login", data=form, headers=headers)
        assert forged.status_code == 403 and "set-cookie" not in forged.headers, headers
        assert guarded.client.post("/logout", headers=headers).status_code == 403, headers
    # What Chromium sends from the login page (Origin null under Referrer-Policy: no-referrer),
    # an older browser, and a script.
    for headers in ({"sec-fetch-site": "same-origin", "origin": "null"}, {"origin": guarded.url}, {}):
        same = guarded.client.post("/login", data=form, headers=headers)
        assert same.status_code == 303 and COOKIE in same.headers["set-cookie"], headers
