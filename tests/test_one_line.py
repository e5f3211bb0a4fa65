"""The one line is enough: the middleware configures from the environment on first use; an explicit
``configure()`` before or after still wins; ``oa.handle()`` gives the live handle."""

from __future__ import annotations

import json

from tests.fake_tracker import FakeTracker
from tests.helpers import run_python

DRIVE = """
import asyncio, json, logging, sys
logging.basicConfig(level=logging.WARNING)
import otel_analytics as oa
from tests.asgi_client import call
from tests.chat_apps import build

app = oa.AnalyticsMiddleware(build(), server_span=False)

def request(conversation):
    asyncio.run(call(app, "POST", "/api/messages", body=json.dumps({"conversationId": conversation}).encode()))
"""


def test_the_middleware_configures_itself_from_the_environment(fake_tracker: FakeTracker) -> None:
    result = run_python(
        DRIVE
        + """
request("conv-auto")
handle = oa.handle()
assert handle is oa.handle() and handle is oa.configure()  # the same, and configure() says nothing
print(json.dumps({"exporters": list(handle.exporters), "flushed": handle.force_flush(timeout=10)}))
""",
        ANALYTICS_TRACKER_URL=fake_tracker.url,
        PYTHONPATH=".",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"exporters": ["tracker"], "flushed": True}
    assert [i["session_id"] for i in fake_tracker.interactions] == ["conv-auto"]
    assert "already configured" not in result.stderr and "otel-analytics" not in result.stderr


def test_an_explicit_configure_after_the_middlewares_wins(fake_tracker: FakeTracker) -> None:
    result = run_python(
        DRIVE
        + """
request("conv-before")
automatic = oa.handle()
handle = oa.configure(exporters="console", service_name="explicit")  # the app's own, later
assert handle is not automatic and oa.handle() is handle
request("conv-after")
handle.force_flush(timeout=10)
print("EXPORTERS", list(handle.exporters))
""",
        ANALYTICS_TRACKER_URL=fake_tracker.url,
        PYTHONPATH=".",
    )
    assert result.returncode == 0, result.stderr
    assert "EXPORTERS ['console']" in result.stdout
    assert '"session.id": "conv-after"' in result.stdout  # the console exporter got the later request
    assert [i["session_id"] for i in fake_tracker.interactions] == ["conv-before"]  # flushed as it gave way
    assert "ignoring new values" not in result.stderr


def test_a_configure_before_the_first_request_is_the_one_used() -> None:
    result = run_python(
        """
import otel_analytics as oa
handle = oa.configure(exporters="console", service_name="first")
again = oa.configure()
changed = oa.configure(service_name="second")
assert handle is again is changed is oa.handle()
""",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("ignoring new values of ['service_name']") == 1  # said for the keywords only
