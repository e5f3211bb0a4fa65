"""The dashboard in a real browser: Playwright driving Debian's Chromium (``apt-get install
chromium``, launched by its path: a browser download cannot work here) against the tracker over
real HTTP on 127.0.0.1. A person's path through the pages, the figures against the read API, the
charts drawn, no console error, hostile ids as text, the CSP enforced, a user's token confined,
the exports summed, live refresh and its pause, a phone's width and the dark scheme. Each page's
screenshot is written to ``build/dashboard-screenshots/`` for review.

``make test`` installs Chromium when it is missing and sets ``REQUIRE_BROWSER=1``: there, no
browser is a failure, not a skip.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.dashboard_data import populate
from otel_analytics.report import money
from tests.conftest import LocalTracker

# Playwright is in the test extras; where REQUIRE_BROWSER is set, its absence fails as loudly as Chromium's.
if os.environ.get("REQUIRE_BROWSER"):
    import playwright.sync_api as playwright_api
else:
    playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "dashboard-screenshots"
XSS = "<img src=x onerror=alert(1)>"
NOW = datetime.now(UTC)

if CHROMIUM is None:
    if os.environ.get("REQUIRE_BROWSER"):
        raise RuntimeError("REQUIRE_BROWSER is set and there is no Chromium: apt-get install chromium")
    pytest.skip("no Chromium here (apt-get install chromium)", allow_module_level=True)


def chat(session_id: str, user_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "user_id": user_id,
        "type": "chat",
        "timestamp": datetime.now(UTC).isoformat(),
        "model_name": "gpt-4o-mini",
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "compute_duration_ms": 640.0,
        "metadata": {"provider": "openai", "time_to_first_chunk_ms": 210.0},
        **extra,
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"],
        )
        try:
            yield launched
        finally:
            launched.close()


class Page:
    """A browser tab that records console errors, page errors and dialogs."""

    def __init__(self, browser: Any, base: str, **options: Any) -> None:
        self.context = browser.new_context(base_url=base, accept_downloads=True, **options)
        self.tab = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.tab.on("console", self._console)
        self.tab.on("pageerror", lambda error: self.errors.append(str(error)))
        self.tab.on("dialog", self._dialog)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def charts_drawn(self) -> list[bool]:
        """For each chart: its canvas was drawn and has coloured pixels."""
        result: list[bool] = self.tab.eval_on_selector_all(
            "canvas[data-chart]",
            """cs => cs.map(c => {
                if (!c.dataset.drawn || c.width === 0) return false;
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
                return false;
            })""",
        )
        return result

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[LocalTracker]:
    tracker = LocalTracker(str(tmp_path / "browser.db"))
    try:
        populate(tracker.store, 150, users=12, now=NOW)
        c = tracker.client
        c.post("/v1/track/session/start", json={"session_id": XSS, "user_id": XSS, "start_time": NOW.isoformat()})
        c.post("/v1/track/interaction", json=chat(XSS, XSS, model_name=XSS))
        yield tracker
    finally:
        tracker.close()


def test_a_person_goes_from_the_overview_to_a_session(browser: Any, tracker: LocalTracker) -> None:
    page = Page(browser, tracker.url)
    try:
        tab = page.tab
        tab.goto("/?days=30")
        tab.wait_for_selector("canvas[data-drawn]")
        assert page.charts_drawn() == [True, True, True]
        summary = tracker.client.get("/?days=30&format=json").json()["totals"]
        assert tab.inner_text('[data-total="interactions"]') == f"{summary['interactions']:,}"
        assert tab.inner_text('[data-total="cost"]') == money(summary["cost_mc"])
        page.shot("overview")

        tab.click("header >> text=Sessions")
        tab.wait_for_url("**/sessions")
        tab.fill('input[name="user"]', "user-004")
        tab.click("#session-filters button[type=submit]")
        tab.wait_for_url("**/sessions?user=user-004*")
        api = tracker.client.get("/v1/sessions", params={"user_id": "user-004", "limit": 100}).json()
        assert tab.inner_text('[data-total="sessions"]') == str(api["pagination"]["total"])
        shown = tab.eval_on_selector_all(
            "#sessions-table tbody tr",
            "rows => rows.map(r => [r.cells[0].textContent, r.cells[5].textContent, r.cells[8].textContent])",
        )
        expected = [[s["id"], str(s["total_interactions"]), money(s["total_cost"]["micro_cents"])] for s in api["data"]]
        assert shown == expected[:50]
        page.shot("sessions-of-a-user")

        first = api["data"][0]["id"]
        tab.click(f"a.session-link >> text={first}")
        tab.wait_for_selector("#session-id")
        assert tab.inner_text("#session-id") == first
        detail = tracker.client.get(f"/v1/sessions/{first}").json()
        interactions = tracker.client.get(f"/v1/sessions/{first}/interactions").json()["interactions"]
        assert tab.inner_text('#session-totals [data-total="interactions"]') == str(detail["total_interactions"])
        assert tab.inner_text('#session-totals [data-total="cost"]') == money(detail["total_cost"]["micro_cents"])
        assert tab.locator("#interactions tbody tr").count() == len(interactions)
        page.shot("session")

        tab.go_back()  # the filter is in the URL: back is the filtered list
        tab.wait_for_url("**/sessions?user=user-004*")
        assert tab.input_value('input[name="user"]') == "user-004"

        tab.goto("/users")
        page.shot("users")
        tab.click("#users a >> nth=0")
        tab.wait_for_selector("canvas[data-drawn]")
        assert page.charts_drawn() == [True, True]
        page.shot("user")
        assert page.errors == []
    finally:
        page.close()


def test_hostile_ids_are_text_and_no_dialog_fires(browser: Any, tracker: LocalTracker) -> None:
    page = Page(browser, tracker.url)
    try:
        tab = page.tab
        tab.goto("/sessions")
        tab.click(f"a.session-link >> text={XSS}")
        tab.wait_for_selector("#session-id")
        assert tab.inner_text("#session-id") == XSS
        assert tab.inner_text("#session-user") == XSS
        assert tab.locator("img").count() == 0
        tab.click("#session-user")
        tab.wait_for_selector("#user-id")
        assert tab.inner_text("#user-id") == XSS
        tab.goto("/?days=1")
        tab.wait_for_selector("canvas[data-drawn]")
        assert tab.locator("img").count() == 0
        assert page.dialogs == []
        assert page.errors == []
    finally:
        page.close()


def test_the_content_security_policy_refuses_inline_script(browser: Any, tracker: LocalTracker) -> None:
    page = Page(browser, tracker.url)
    try:
        tab = page.tab
        answer = tab.goto("/")
        assert answer is not None and "script-src 'self'" in answer.headers["content-security-policy"]
        tab.wait_for_selector("canvas[data-drawn]")  # the page's own scripts run
        refused = tab.evaluate(
            """() => new Promise(resolve => {
                document.addEventListener('securitypolicyviolation', e => resolve(e.violatedDirective));
                const s = document.createElement('script');
                s.textContent = 'window.__inline = true';
                document.body.appendChild(s);
                setTimeout(() => resolve(window.__inline ? 'ran' : 'no event'), 2000);
            })"""
        )
        assert refused.startswith("script-src")
        assert tab.evaluate("window.__inline") is None
    finally:
        page.close()


def test_a_user_token_sees_its_own_sessions_and_its_export_sums_to_the_page(browser: Any, tmp_path: Path) -> None:
    tracker = LocalTracker(str(tmp_path / "scoped.db"), token="admin-secret", user_tokens={"alice-secret": "alice"})
    page = Page(browser, tracker.url)
    try:
        admin = {"Authorization": "Bearer admin-secret"}
        for user, count in (("alice", 4), ("bob", 3)):
            for n in range(count):
                body = chat(f"{user}-{n}", user, prompt_tokens=1000 + 137 * n)
                assert tracker.client.post("/v1/track/interaction", json=body, headers=admin).status_code == 202
        tab = page.tab
        tab.goto("/sessions")
        tab.wait_for_url("**/login?next=*")
        tab.fill('input[name="token"]', "alice-secret")
        tab.click("form.login button")
        tab.wait_for_url("**/sessions")
        shown = tab.eval_on_selector_all("a.session-link", "links => links.map(a => a.textContent)")
        assert sorted(shown) == ["alice-0", "alice-1", "alice-2", "alice-3"]
        assert "bob" not in tab.content()
        assert tab.goto("/sessions/bob-0").status == 404
        assert "No such session" in tab.content()
        page.errors.remove("Failed to load resource: the server responded with a status of 404 (Not Found)")
        # The cookie is out of the page's reach.
        assert tab.evaluate("document.cookie") == ""
        tab.goto("/sessions")
        with tab.expect_download() as download:
            tab.click("#export-csv")
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        assert {r["user_id"] for r in rows} == {"alice"}
        tab.goto("/")
        assert tab.inner_text('[data-total="sessions"]') == str(len(rows))
        assert tab.inner_text('[data-total="cost"]') == money(sum(int(r["cost_mc"]) for r in rows))
        assert tab.inner_text('[data-total="prompt_tokens"]') == f"{sum(int(r['prompt_tokens']) for r in rows):,}"
        tab.click("text=Sign out")
        tab.wait_for_url("**/login")
        assert tab.goto("/sessions").url.endswith("/login?next=%2Fsessions")
        assert page.errors == []
    finally:
        page.close()
        tracker.close()


def test_new_sessions_appear_on_their_own_and_live_can_be_paused(browser: Any, tracker: LocalTracker) -> None:
    page = Page(browser, tracker.url)
    try:
        tab = page.tab
        tab.goto("/sessions")
        tab.wait_for_selector("#live[aria-pressed=true]")
        tracker.client.post("/v1/track/interaction", json=chat("zz-live-1", "user-live"))
        tab.wait_for_selector("a.session-link >> text=zz-live-1", timeout=15_000)
        tab.click("#live")
        assert tab.get_attribute("#live", "aria-pressed") == "false"
        tracker.client.post("/v1/track/interaction", json=chat("zz-live-2", "user-live"))
        time.sleep(7)  # more than a poll's interval
        assert tab.locator("a.session-link >> text=zz-live-2").count() == 0
        tab.reload()  # the pause is remembered
        assert tab.get_attribute("#live", "aria-pressed") == "false"
        assert page.errors == []
    finally:
        page.close()


def test_a_phone_width_and_the_dark_scheme(browser: Any, tracker: LocalTracker) -> None:
    page = Page(browser, tracker.url, viewport={"width": 390, "height": 844}, color_scheme="dark")
    try:
        tab = page.tab
        for path in ("/", "/sessions", "/sessions/session-0000003", "/users"):
            tab.goto(path)
            overflow = tab.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, path  # wide tables scroll inside their box, not the page
        background = tab.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(18, 22, 28)"
        page.shot("phone-dark")
        assert page.errors == []
    finally:
        page.close()
