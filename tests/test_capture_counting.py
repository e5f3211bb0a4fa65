"""Each provider call is counted once, whatever combination of the ways in records it: the
middleware reading the app's answer, an enclosing ``oa.interaction("chat")``, ``track_interaction``
of the same call, and the SDK's own GenAI span."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

import otel_analytics as oa
from examples.fake_llm import COMPLETION_TOKENS, create_app, prompt_tokens
from otel_analytics.exporters.tracker import TrackerSpanExporter
from otel_analytics.testing import CaptureAnalytics
from tests.conftest import LocalTracker
from tests.servers import ServerThread

MESSAGES: Any = [{"role": "user", "content": "What about the weather?"}]
PROMPT = prompt_tokens({"messages": MESSAGES})


@pytest.fixture(scope="module")
def provider_url() -> Iterator[str]:
    server = ServerThread(create_app())
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def capture() -> Iterator[CaptureAnalytics]:
    captured = CaptureAnalytics()
    try:
        yield captured
    finally:
        captured.close()


def usage_sum(capture: CaptureAnalytics, key: str = "gen_ai.usage.input_tokens") -> int:
    """What a backend that sums gen_ai.usage.* over every span would show."""
    return sum(int(span["attributes"].get(key, 0)) for span in capture.spans())


def backend(provider_url: str) -> FastAPI:
    """A chat backend with its own routes and its own answer format (no usage in it), calling the
    provider through the openai SDK; ``/api/chat/relay`` passes the provider's answer on as is."""
    # FastAPI's own request spans (its native telemetry, on once any test has installed a global
    # SDK tracer provider) would go to that provider: the request span here is the middleware's.
    app = FastAPI(telemetry={"tracing": False})

    def provider() -> openai.AsyncOpenAI:  # one per request, closed with it (its pool is the loop's)
        return openai.AsyncOpenAI(base_url=f"{provider_url}/v1", api_key="sk-test", max_retries=0)

    @app.post("/api/chat/{kind}")
    async def chat(kind: str, request: Request) -> Any:
        body = await request.json()
        client = provider()
        if kind == "stream":
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )

            async def own_format() -> AsyncIterator[bytes]:
                async with client:
                    async for chunk in stream:
                        if chunk.choices and chunk.choices[0].delta.content:
                            yield f"data: {json.dumps({'text': chunk.choices[0].delta.content})}\n\n".encode()

            return StreamingResponse(own_format(), media_type="text/event-stream")
        async with client:
            reply = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        if kind == "relay":
            return JSONResponse(reply.model_dump())  # usage and id as the provider sent them
        return {"reply": reply.choices[0].message.content, "conversation": body["conversationId"]}

    oa.instrument_app(app)
    return app


@pytest.mark.parametrize("kind", ["own", "stream", "relay"])
def test_through_the_middleware_under_uvicorn_a_call_is_one_interaction_of_the_session(
    provider_url: str, capture: CaptureAnalytics, kind: str
) -> None:
    server = ServerThread(backend(provider_url))
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(2):
                answer = client.post(
                    f"/api/chat/{kind}", json={"conversationId": "conv-mw"}, headers={"x-user-id": "ann"}
                )
                assert answer.status_code == 200
    finally:
        server.close()
    chats = capture.spans(type="chat")
    assert len(chats) == 2  # the captured calls; the middleware's reading of the answers adds none
    for chat in chats:
        a = chat["attributes"]
        assert (a["session.id"], a["user.id"]) == ("conv-mw", "ann")
        assert a["gen_ai.usage.input_tokens"] == PROMPT and a["analytics.cost.micro_cents"] > 0
        assert chat["trace_id"] == format(oa.session_trace_id("conv-mw"), "032x")
    servers = [span for span in capture.spans() if span["kind"] == "SERVER"]
    # Each request's span links to its call's interaction (the link it made at the start points at it).
    assert sorted(link for server_span in servers for link in server_span["links"]) == sorted(
        chat["span_id"] for chat in chats
    )
    assert usage_sum(capture) == 2 * PROMPT


def test_an_enclosing_chat_interaction_is_filled_not_doubled(provider_url: str, capture: CaptureAnalytics) -> None:
    with openai.OpenAI(base_url=f"{provider_url}/v1", api_key="k", max_retries=0) as client, oa.session("conv-enc"):
        with oa.interaction("chat", model="gpt-4o") as it:
            reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            it.record_response(reply)  # the app reads it too: the same response, counted once
        with oa.interaction("chat", model="gpt-4o"):  # a tool loop: two calls inside one interaction
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    first, loop, inner = sorted(capture.spans(type="chat"), key=lambda span: span["start_time"])
    assert first["attributes"]["gen_ai.usage.input_tokens"] == PROMPT
    assert first["attributes"]["gen_ai.usage.output_tokens"] == COMPLETION_TOKENS
    # The loop's first call filled it; the second is one of its own, nested under it.
    assert loop["attributes"]["gen_ai.usage.input_tokens"] == PROMPT
    assert inner["parent_span_id"] == loop["span_id"]
    assert usage_sum(capture) == 3 * PROMPT


@pytest.mark.parametrize("how", ["response id", "model and counts"])
def test_track_interaction_of_a_captured_call_is_not_recorded_again(
    provider_url: str, capture: CaptureAnalytics, how: str
) -> None:
    with openai.OpenAI(base_url=f"{provider_url}/v1", api_key="k", max_retries=0) as client, oa.session("conv-t"):
        reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert reply.usage is not None
        same = oa.track_interaction(
            model_name=reply.model if how == "model and counts" else "gpt-4o",
            prompt_tokens=reply.usage.prompt_tokens,
            completion_tokens=reply.usage.completion_tokens,
            response_id=reply.id if how == "response id" else None,
        )
        other = oa.track_interaction(model_name="gpt-4o", prompt_tokens=5, completion_tokens=5)  # another call
    chats = capture.spans(type="chat")
    assert len(chats) == 2
    captured_id = next(s["span_id"] for s in chats if s["attributes"]["gen_ai.usage.input_tokens"] == PROMPT)
    assert same == captured_id and other != captured_id


@pytest.mark.parametrize("sdk_tracing", [True, False])
def test_the_sdks_own_span_is_joined_not_counted_twice(
    provider_url: str, capture: CaptureAnalytics, sdk_tracing: bool
) -> None:
    option: Any = {"tracer_provider": capture.provider} if sdk_tracing else False
    with anthropic.Anthropic(base_url=provider_url, api_key="k", max_retries=0, open_telemetry=option) as client:
        with oa.session("conv-sdk"):
            client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=50, messages=MESSAGES)
            with client.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=50, messages=MESSAGES) as stream:
                stream.get_final_message()
    chats = capture.spans(type="chat")
    assert len(chats) == 2 and all(c["attributes"]["session.id"] == "conv-sdk" for c in chats)
    sdk_spans = [s for s in capture.spans() if s["name"] == "anthropic.messages.create"]
    assert len(sdk_spans) == (2 if sdk_tracing else 0)
    for sdk_span, chat in zip(sdk_spans, chats if sdk_tracing else [], strict=True):
        a = sdk_span["attributes"]
        assert a["analytics.counted_in"] == chat["span_id"]  # which interaction counts it
        assert "gen_ai.usage.input_tokens" not in a and a["analytics.sdk.gen_ai.usage.input_tokens"] == PROMPT
        assert chat["links"] == [sdk_span["span_id"]] and sdk_span["links"] == [chat["span_id"]]
        assert a["analytics.session.id"] == "conv-sdk" and "session.id" not in a
    assert usage_sum(capture) == 2 * PROMPT
    assert usage_sum(capture, "gen_ai.usage.output_tokens") == 2 * COMPLETION_TOKENS


def test_the_tracker_counts_each_call_once(provider_url: str, tmp_path: Path) -> None:
    tracker = LocalTracker(str(tmp_path / "calls.db"))
    capture = CaptureAnalytics()
    try:
        with openai.OpenAI(base_url=f"{provider_url}/v1", api_key="k", max_retries=0) as client, oa.session("conv-db"):
            with oa.interaction("chat", model="gpt-4o"):
                reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            oa.track_interaction(
                model_name="gpt-4o", prompt_tokens=PROMPT, completion_tokens=COMPLETION_TOKENS, response_id=reply.id
            )
        exporter = TrackerSpanExporter(url=tracker.url)
        exporter.export(list(capture.finished()))
        exporter.shutdown()
        assert tracker.rows("SELECT COUNT(*), SUM(prompt_tokens) FROM interactions WHERE type = 'chat'") == [
            (1, PROMPT)
        ]
    finally:
        capture.close()
        tracker.close()
