"""The example chat backend (the real SDKs against the fake provider), instrumented with one line,
shipping to the local tracker over HTTP."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider

import otel_analytics as oa
from examples.fake_llm import COMPLETION_TOKENS, prompt_tokens
from examples.fake_llm import create_app as create_fake_provider
from tests.conftest import LocalTracker
from tests.servers import ServerThread

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "chat_app.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chat_app_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_backend_records_its_provider_calls_and_relayed_answers(
    local_tracker: LocalTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = ServerThread(create_fake_provider())
    monkeypatch.setenv("OPENAI_BASE_URL", f"{provider.url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", provider.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY", "false")
    handle = oa.configure(tracer_provider=TracerProvider(), exporters="tracker", tracker_url=local_tracker.url)
    example = load_example()
    server = ServerThread(example.app, lifespan="on")  # the example closes its SDK clients at shutdown
    texts = ["Where should I stay in Lyon?", "And where to eat?", "Summarise"]
    try:
        with httpx.Client(base_url=server.url, timeout=10, headers={"X-User-Id": "user-7"}) as client:
            conversation = client.post("/api/convos").json()["conversationId"]
            for text, model in zip(texts[:2], ("gpt-4o", "claude-3-5-haiku-20241022"), strict=True):
                reply = client.post(
                    "/api/messages", json={"conversationId": conversation, "model": model, "text": text}
                )
                assert "Paris" in reply.json()["reply"]  # the app's own format, no usage in it
            body = {"conversationId": conversation, "model": "gpt-4o-mini", "text": texts[2], "stream": True}
            with client.stream("POST", "/api/messages", json=body) as response:
                events = [line for line in response.iter_lines() if line.startswith("data: {")]
            assert events[-1] == 'data: {"done": true}'
            relayed = client.post("/api/ask", json={"conversationId": conversation, "text": "Worth it?"}).json()
            client.delete(f"/api/convos/{conversation}")
        assert handle.force_flush(timeout=10)
    finally:
        server.close()
        handle.shutdown()
        provider.close()
    session = local_tracker.client.get(f"/v1/sessions/{conversation}").json()
    assert session["user_id"] == "user-7"
    assert session["end_time"] is not None  # DELETE ended it
    assert session["metadata"] == {"endpoint": "/api/convos"}
    rows = local_tracker.client.get(f"/v1/sessions/{conversation}/interactions").json()["interactions"]
    chat = [(r["model_name"], r["prompt_tokens"], r["completion_tokens"]) for r in rows if r["type"] == "chat"]
    history: list[dict[str, str]] = []
    expected = []
    for text, model in zip(texts, ("gpt-4o-2024-08-06", "claude-3-5-haiku-20241022", "gpt-4o-mini"), strict=True):
        history.append({"role": "user", "content": text})
        expected.append((model, prompt_tokens({"messages": history}), COMPLETION_TOKENS))
    relay = ("gpt-4o-mini", relayed["usage"]["prompt_tokens"], relayed["usage"]["completion_tokens"])
    assert chat == [*expected, relay]  # the three provider calls, captured; the relayed answer, read
    assert all(r["user_id"] == "user-7" for r in rows)
    assert all(r["total_cost"]["micro_cents"] > 0 for r in rows if r["type"] == "chat")
    db = [r for r in rows if r["type"] == "db"]
    assert len(db) == 3  # the app's own oa.interaction("db") calls joined the conversation
