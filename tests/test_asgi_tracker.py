"""The example chat backend, instrumented with one line, shipping to the local tracker over HTTP."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import httpx
from opentelemetry.sdk.trace import TracerProvider

import otel_analytics as oa
from tests.conftest import LocalTracker
from tests.servers import ServerThread

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "chat_app.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chat_app_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tracker_gets_what_the_librechat_middleware_sent_plus_streams(local_tracker: LocalTracker) -> None:
    handle = oa.configure(tracer_provider=TracerProvider(), exporters="tracker", tracker_url=local_tracker.url)
    example = load_example()
    server = ServerThread(example.app)
    expected_chat = []  # what the existing middleware would have sent for each JSON reply
    try:
        with httpx.Client(base_url=server.url, timeout=10, headers={"X-User-Id": "user-7"}) as client:
            conversation = client.post("/api/convos").json()["conversationId"]
            for model in ("gpt-4o", "gpt-4o-mini"):
                reply = client.post(
                    "/api/messages",
                    json={"conversationId": conversation, "model": model, "text": "Where should I stay in Lyon?"},
                ).json()
                expected_chat.append(
                    (reply["model"], reply["usage"]["prompt_tokens"], reply["usage"]["completion_tokens"])
                )
            with client.stream(
                "POST",
                "/api/messages",
                json={"conversationId": conversation, "model": "gpt-4o-mini", "text": "Summarise", "stream": True},
            ) as response:
                events = [line for line in response.iter_lines() if line.startswith("data: {")]
            streamed_usage = __import__("json").loads(events[-1][6:])["usage"]
            client.delete(f"/api/convos/{conversation}")
        assert handle.force_flush(timeout=10)
    finally:
        server.close()
        handle.shutdown()
    session = local_tracker.client.get(f"/v1/sessions/{conversation}").json()
    assert session["user_id"] == "user-7"
    assert session["end_time"] is not None  # DELETE ended it
    assert session["metadata"] == {"endpoint": "/api/convos"}
    rows = local_tracker.client.get(f"/v1/sessions/{conversation}/interactions").json()["interactions"]
    chat = [(r["model_name"], r["prompt_tokens"], r["completion_tokens"]) for r in rows if r["type"] == "chat"]
    streamed = ("gpt-4o-mini", streamed_usage["prompt_tokens"], streamed_usage["completion_tokens"])
    assert chat == [*expected_chat, streamed]  # the JSON replies as before, plus the streamed one
    assert all(r["user_id"] == "user-7" for r in rows)
    assert all(r["total_cost"]["micro_cents"] > 0 for r in rows if r["type"] == "chat")
    db = [r for r in rows if r["type"] == "db"]
    assert len(db) == 3  # the app's own oa.interaction("db") calls joined the conversation
