"""Provider calls captured at the HTTP client: the real openai and anthropic SDKs (on httpx2) and raw
httpx and httpx2 clients, against the fake provider over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

import otel_analytics as oa
from examples.fake_llm import COMPLETION_TOKENS, Behaviour, Fault, create_app, prompt_tokens
from otel_analytics.testing import CaptureAnalytics
from tests.servers import ServerThread

MESSAGES: Any = [{"role": "user", "content": "Plan a weekend in Paris"}]
PROMPT = prompt_tokens({"messages": MESSAGES})


class Provider:
    def __init__(self) -> None:
        self.app = create_app()
        self.server = ServerThread(self.app)
        self.url = self.server.url

    @property
    def behaviour(self) -> Behaviour:
        behaviour: Behaviour = self.app.state.behaviour
        return behaviour


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    fake = Provider()
    try:
        yield fake
    finally:
        fake.server.close()


@pytest.fixture
def fresh(provider: Provider) -> Provider:
    provider.app.state.behaviour = Behaviour()
    return provider


@pytest.fixture
def captured(fresh: Provider) -> Iterator[CaptureAnalytics]:
    # The fake is OpenAI-compatible at <url>/v1: listed, so its /responses and /embeddings count too.
    capture = CaptureAnalytics(llm_hosts=(f"{fresh.url}/v1",))
    try:
        yield capture
    finally:
        capture.close()


_open: list[Any] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """SDK clients hold connection pools: each test closes the ones it made."""
    yield
    while _open:
        _open.pop().close()


def openai_client(provider: Provider, **options: Any) -> openai.OpenAI:
    options.setdefault("max_retries", 0)
    client = openai.OpenAI(base_url=f"{provider.url}/v1", api_key="sk-canary-openai-key-1234567890", **options)
    _open.append(client)
    return client


def anthropic_client(provider: Provider, **options: Any) -> anthropic.Anthropic:
    options.setdefault("max_retries", 0)
    options.setdefault("open_telemetry", False)
    client = anthropic.Anthropic(base_url=provider.url, api_key="sk-ant-canary-key-1234567890", **options)
    _open.append(client)
    return client


def chats(capture: CaptureAnalytics) -> list[dict[str, Any]]:
    return [span["attributes"] for span in capture.spans(type="chat")]


def assert_counted(attributes: dict[str, Any], model: str, provider: str, operation: str = "chat") -> None:
    assert attributes["gen_ai.request.model"] == model
    assert attributes["gen_ai.provider.name"] == provider
    assert attributes["gen_ai.operation.name"] == operation
    assert attributes["gen_ai.usage.input_tokens"] == PROMPT
    assert attributes["analytics.outcome"] == "completed"
    assert attributes["analytics.usage.status"] == "reported"
    assert attributes["server.address"] == "127.0.0.1"


def test_openai_chat_json_and_stream_sync(fresh: Provider, captured: CaptureAnalytics) -> None:
    client = openai_client(fresh)
    with oa.session("conv-openai", user_id="u1"):
        reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    assert reply.usage is not None and reply.usage.prompt_tokens == PROMPT
    assert chunks[-1].usage is not None
    json_call, stream_call = chats(captured)
    assert_counted(json_call, "gpt-4o", "openai")
    assert json_call["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert json_call["gen_ai.usage.output_tokens"] == COMPLETION_TOKENS
    assert json_call["gen_ai.response.finish_reasons"] == ("stop",)
    assert json_call["analytics.cost.micro_cents"] > 0 and "gen_ai.request.stream" not in json_call
    assert (json_call["session.id"], json_call["user.id"]) == ("conv-openai", "u1")
    assert_counted(stream_call, "gpt-4o-mini", "openai")
    assert stream_call["gen_ai.request.stream"] is True
    assert stream_call["gen_ai.response.time_to_first_chunk"] > 0
    spans = captured.spans(type="chat")
    assert {span["trace_id"] for span in spans} == {format(oa.session_trace_id("conv-openai"), "032x")}


@pytest.mark.anyio
async def test_openai_chat_json_and_stream_async(fresh: Provider, captured: CaptureAnalytics) -> None:
    client = openai.AsyncOpenAI(base_url=f"{fresh.url}/v1", api_key="sk-test", max_retries=0)
    async with client:
        await _two_calls(client)
    json_call, stream_call = chats(captured)
    assert_counted(json_call, "gpt-4o", "openai")
    assert_counted(stream_call, "gpt-4o-mini", "openai")
    assert stream_call["gen_ai.usage.output_tokens"] == COMPLETION_TOKENS


async def _two_calls(client: openai.AsyncOpenAI) -> None:
    with oa.session("conv-async", user_id="u1"):
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for _ in stream:
            pass


def test_openai_responses_and_embeddings(fresh: Provider, captured: CaptureAnalytics) -> None:
    client = openai_client(fresh)
    with oa.session("conv-responses"):
        client.responses.create(model="gpt-4o-mini", input=MESSAGES)
        with client.responses.create(model="gpt-4o-mini", input=MESSAGES, stream=True) as stream:
            events = [event.type for event in stream]
        client.embeddings.create(model="text-embedding-3-small", input="Plan a weekend in Paris")
    assert events[-1] == "response.completed"
    responses, streamed, embedded = chats(captured)
    for call in (responses, streamed):
        assert_counted(call, "gpt-4o-mini", "openai")
        assert call["gen_ai.usage.output_tokens"] == COMPLETION_TOKENS
        assert call["gen_ai.response.finish_reasons"] == ("completed",)
    assert embedded["gen_ai.operation.name"] == "embeddings"
    assert embedded["gen_ai.usage.input_tokens"] == prompt_tokens({"input": "Plan a weekend in Paris"})
    assert "gen_ai.usage.output_tokens" not in embedded
    names = [span["name"] for span in captured.spans(type="chat")]
    assert names == ["chat gpt-4o-mini", "chat gpt-4o-mini", "embeddings text-embedding-3-small"]


def test_anthropic_messages_create_and_stream(fresh: Provider, captured: CaptureAnalytics) -> None:
    client = anthropic_client(fresh)
    model = "claude-3-5-haiku-20241022"
    with oa.session("conv-claude"):
        client.messages.create(model=model, max_tokens=100, messages=MESSAGES)
        for _ in client.messages.create(model=model, max_tokens=100, messages=MESSAGES, stream=True):
            pass
        with client.messages.stream(model=model, max_tokens=100, messages=MESSAGES) as stream:
            text = stream.get_final_text()
    assert "Paris" in text
    calls = chats(captured)
    assert len(calls) == 3
    for call in calls:
        assert_counted(call, model, "anthropic")
        assert call["gen_ai.usage.output_tokens"] == COMPLETION_TOKENS
        assert call["gen_ai.response.finish_reasons"] == ("end_turn",)
        assert call["analytics.cost.micro_cents"] > 0


@pytest.mark.anyio
async def test_anthropic_async_stream(fresh: Provider, captured: CaptureAnalytics) -> None:
    async with anthropic.AsyncAnthropic(base_url=fresh.url, api_key="k", max_retries=0, open_telemetry=False) as client:
        async with client.messages.stream(
            model="claude-3-5-haiku-20241022",
            max_tokens=100,
            messages=MESSAGES,
        ) as stream:
            await stream.get_final_message()
    (call,) = chats(captured)
    assert_counted(call, "claude-3-5-haiku-20241022", "anthropic")
    assert "session.id" not in call  # outside any session: recorded without one (the default)


@pytest.mark.parametrize("library", [httpx, httpx2], ids=["httpx", "httpx2"])
@pytest.mark.parametrize("encoding", [None, "gzip", "br"])
@pytest.mark.parametrize("split", [None, 7])
def test_the_client_receives_exactly_the_providers_bytes(
    fresh: Provider, library: Any, encoding: str | None, split: int | None
) -> None:
    """The same raw chunks, in the same order, with and without capture; the usage still read
    through gzip or brotli, events and UTF-8 characters split across chunks."""
    fresh.behaviour.encoding = encoding
    fresh.behaviour.split_bytes = split
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}

    def raw_chunks() -> list[bytes]:
        with library.Client(timeout=10) as client:
            with client.stream("POST", f"{fresh.url}/v1/chat/completions", json=body) as response:
                return list(response.iter_raw())

    bare = raw_chunks()
    capture = CaptureAnalytics()
    try:
        seen = raw_chunks()
        (call,) = chats(capture)
    finally:
        capture.close()
    assert seen == bare and len(seen) > 3
    assert call["gen_ai.usage.input_tokens"] == PROMPT and call["gen_ai.usage.output_tokens"] == COMPLETION_TOKENS


def test_sdk_results_are_the_same_with_and_without_capture(fresh: Provider) -> None:
    def results() -> tuple[Any, ...]:
        client = openai_client(fresh)
        reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        chunks = client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        return reply.model_dump(), [chunk.model_dump() for chunk in chunks]

    bare = results()
    capture = CaptureAnalytics()
    try:
        assert results() == bare
        assert len(chats(capture)) == 2
    finally:
        capture.close()


def test_a_stream_abandoned_early_is_closed_with_no_tokens(fresh: Provider, captured: CaptureAnalytics) -> None:
    stream = openai_client(fresh).chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    for n, _ in enumerate(stream):
        if n == 2:
            break
    stream.close()
    (call,) = chats(captured)
    assert call["analytics.outcome"] == "closed"
    assert call["analytics.usage.status"] == "missing" and "gen_ai.usage.input_tokens" not in call


def test_a_provider_that_drops_the_connection_mid_stream(fresh: Provider, captured: CaptureAnalytics) -> None:
    fresh.behaviour.faults.append(Fault("/v1/chat/completions", drop_after_chunks=3))
    stream = openai_client(fresh).chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    with pytest.raises(openai.APIError):  # the SDK's own error, unchanged by the capture
        list(stream)
    (call,) = chats(captured)
    assert call["analytics.outcome"] == "failed" and "gen_ai.usage.input_tokens" not in call
    assert call["error.type"]


def test_429_then_200_with_the_sdks_retry_is_two_attempts_and_counted_once(
    fresh: Provider, captured: CaptureAnalytics
) -> None:
    rate_limited = b'{"error": {"message": "slow down", "type": "rate_limit_error"}}'
    fresh.behaviour.faults.append(
        Fault("/v1/chat/completions", 429, rate_limited, "application/json", {"retry-after-ms": "10"})
    )
    openai_client(fresh, max_retries=2).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    failed, succeeded = chats(captured)
    assert (failed["analytics.outcome"], failed["error.type"]) == ("failed", "429")
    assert "gen_ai.usage.input_tokens" not in failed and "analytics.cost.micro_cents" not in failed
    assert succeeded["gen_ai.usage.input_tokens"] == PROMPT  # the tokens, once
    error_span = captured.spans(type="chat")[0]
    assert error_span["status"] == "ERROR"


def test_an_error_with_a_body_that_is_not_json(fresh: Provider, captured: CaptureAnalytics) -> None:
    fresh.behaviour.faults.append(Fault("/v1/messages", 500))
    with pytest.raises(anthropic.InternalServerError):
        anthropic_client(fresh).messages.create(
            model="claude-3-5-haiku-20241022",
            max_tokens=10,
            messages=MESSAGES,
        )
    (call,) = chats(captured)
    assert (call["analytics.outcome"], call["error.type"], call["analytics.status"]) == ("failed", "500", "failed")


def test_a_connection_error_is_a_failed_call(captured: CaptureAnalytics) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{closed}/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    (call,) = chats(captured)
    assert call["analytics.outcome"] == "failed" and call["error.type"] == "ConnectError"


def test_gzip_json_answers_are_read(fresh: Provider, captured: CaptureAnalytics) -> None:
    fresh.behaviour.encoding = "gzip"
    openai_client(fresh).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    (call,) = chats(captured)
    assert call["gen_ai.usage.input_tokens"] == PROMPT


def test_requests_that_are_not_llm_calls_pass_untouched(fresh: Provider, captured: CaptureAnalytics) -> None:
    for library in (httpx, httpx2):
        with library.Client() as client:
            client.get(f"{fresh.url}/v1/chat/completions")  # not a POST
            client.post(f"{fresh.url}/v1/models", json={})  # not a call's path
            client.post(f"{fresh.url}/v1/messages/count_tokens", json={})
    assert chats(captured) == []


def test_outside_a_session_calls_can_be_left_unrecorded(fresh: Provider, caplog: pytest.LogCaptureFixture) -> None:
    capture = CaptureAnalytics(capture_without_session="ignore")
    try:
        openai_client(fresh).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        openai_client(fresh).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert chats(capture) == []
        with oa.session("conv-in"):
            openai_client(fresh).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert len(chats(capture)) == 1
    finally:
        capture.close()
    said = [r for r in caplog.records if "outside any session are not recorded" in r.getMessage()]
    assert len(said) == 1  # never silently: said once


def test_capture_can_be_turned_off_and_uninstalls_cleanly(fresh: Provider) -> None:
    sends = (httpx.Client.send, httpx.AsyncClient.send, httpx2.Client.send, httpx2.AsyncClient.send)
    capture = CaptureAnalytics(capture_llm_calls=False)
    try:
        assert (httpx.Client.send, httpx2.Client.send) == (sends[0], sends[2])
        openai_client(fresh).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert chats(capture) == []
    finally:
        capture.close()
    capture = CaptureAnalytics()
    assert httpx2.Client.send is not sends[2] and httpx.AsyncClient.send is not sends[1]
    capture.close()
    assert (httpx.Client.send, httpx.AsyncClient.send, httpx2.Client.send, httpx2.AsyncClient.send) == sends


def test_secrets_never_reach_a_span(fresh: Provider, captured: CaptureAnalytics) -> None:
    client = openai_client(fresh, default_query={"api_key": "canary-query-secret-77"})
    with oa.session("conv-secret"):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        anthropic_client(fresh).messages.create(
            model="claude-3-5-haiku-20241022",
            max_tokens=10,
            messages=MESSAGES,
        )
    text = repr(captured.spans())
    assert len(chats(captured)) == 2
    for secret in ("canary-openai-key", "canary-key-1234567890", "canary-query-secret-77", "Plan a weekend"):
        assert secret not in text, secret


def test_content_is_recorded_only_when_asked(fresh: Provider) -> None:
    capture = CaptureAnalytics(capture_content=True)
    try:
        openai_client(fresh).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        (call,) = chats(capture)
        assert "Plan a weekend" in call["gen_ai.input.messages"]
    finally:
        capture.close()


def test_the_instrumentor_entry_point(fresh: Provider) -> None:
    from importlib.metadata import entry_points

    (found,) = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "otel_analytics_llm_calls"]
    instrumentor = found.load()()
    original = httpx2.Client.send
    instrumentor.instrument()
    try:
        assert httpx2.Client.send is not original
        capture = CaptureAnalytics()  # configure() finds the hook installed: it leaves it to the agent
        try:
            openai_client(fresh).chat.completions.create(model="gpt-4o", messages=MESSAGES)
            assert len(chats(capture)) == 1
        finally:
            capture.close()
        assert httpx2.Client.send is not original  # still the agent's
    finally:
        instrumentor.uninstrument()
    assert httpx2.Client.send is original


def test_beside_opentelemetry_instrumentation_httpx(fresh: Provider) -> None:
    """Both on: no error, and its HTTP client span nests under the interaction span."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    capture = CaptureAnalytics()
    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=capture.provider)
    try:
        with oa.session("conv-both"), httpx.Client() as client:
            body = {"model": "gpt-4o", "messages": MESSAGES}
            client.post(f"{fresh.url}/v1/chat/completions", json=body).raise_for_status()
        (chat,) = capture.spans(type="chat")
        (http_span,) = [s for s in capture.spans() if s["kind"] == "CLIENT" and s["name"] == "POST"]
        assert http_span["parent_span_id"] == chat["span_id"] and http_span["trace_id"] == chat["trace_id"]
        assert chat["attributes"]["gen_ai.usage.input_tokens"] == PROMPT
    finally:
        instrumentor.uninstrument()
        capture.close()


def test_a_decorated_stream_of_sdk_chunks_is_one_interaction(fresh: Provider, captured: CaptureAnalytics) -> None:
    client = openai.AsyncOpenAI(base_url=f"{fresh.url}/v1", api_key="k", max_retries=0)

    @oa.interaction("chat", model="gpt-4o")
    async def reply() -> Any:
        stream = await client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            yield chunk

    async def consume() -> int:
        async with client:
            return len([chunk async for chunk in reply()])

    with oa.session("conv-deco"):
        assert asyncio.run(consume()) > 3
    (call,) = chats(captured)
    assert call["gen_ai.usage.input_tokens"] == PROMPT and call["gen_ai.usage.output_tokens"] == COMPLETION_TOKENS
