from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import trace

import otel_analytics as oa
from otel_analytics.testing import CaptureAnalytics
from tests.helpers import in_threads

OPENAI_REPLY = {
    "id": "chatcmpl-1",
    "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100},
}


def only(capture: CaptureAnalytics, type: str = "chat") -> dict[str, Any]:
    spans = capture.spans(type=type)
    assert len(spans) == 1, spans
    return spans[0]


def test_chat_span_shape_follows_genai_conventions(capture_analytics: CaptureAnalytics) -> None:
    with oa.session("conv-1", user_id="u1", start=False, end=False):
        with oa.interaction("chat", model="gpt-4o") as it:
            it.record_response(OPENAI_REPLY)
    span = only(capture_analytics)
    assert span["name"] == "chat gpt-4o"
    assert span["kind"] == "CLIENT"
    a = span["attributes"]
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert "gen_ai.system" not in a
    assert a["gen_ai.request.model"] == "gpt-4o"
    assert a["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert a["gen_ai.response.id"] == "chatcmpl-1"
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.usage.input_tokens"] == 1000
    assert a["gen_ai.usage.output_tokens"] == 100
    assert a["gen_ai.conversation.id"] == "conv-1"
    assert a["analytics.usage.status"] == "reported"
    # gpt-4o: $2.5/M in, $10/M out -> 1000*2.5*0.1 + 100*10*0.1 = 250 + 100 mc
    assert a["analytics.cost.micro_cents"] == 350
    assert a["analytics.cost.usd"] == pytest.approx(0.0035)
    assert a["analytics.pricing.version"].startswith("genai-prices ")
    assert a["analytics.outcome"] == "completed"
    # Message content is not recorded by default.
    assert not any(key.startswith(("gen_ai.input", "gen_ai.output")) for key in a)


def test_operation_provider_and_model_are_visible_to_samplers() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler, SamplingResult

    seen: list[dict[str, Any]] = []

    class Recorder(Sampler):
        def should_sample(self, parent_context: Any, trace_id: int, name: str, *args: Any, **kw: Any) -> Any:
            attributes = kw.get("attributes") if "attributes" in kw else (args[1] if len(args) > 1 else None)
            seen.append(dict(attributes or {}))
            result: SamplingResult = ALWAYS_ON.should_sample(parent_context, trace_id, name)
            return result

        def get_description(self) -> str:
            return "recorder"

    capture = CaptureAnalytics(TracerProvider(sampler=Recorder()))
    try:
        with oa.interaction("chat", model="claude-3-5-sonnet-20241022"):
            pass
    finally:
        capture.close()
    chat = next(a for a in seen if a.get("analytics.interaction.type") == "chat")
    assert chat["gen_ai.operation.name"] == "chat"
    assert chat["gen_ai.provider.name"] == "anthropic"
    assert chat["gen_ai.request.model"] == "claude-3-5-sonnet-20241022"


def test_missing_usage_is_marked_missing_never_zero(capture_analytics: CaptureAnalytics) -> None:
    with oa.interaction("chat", model="gpt-4o"):
        pass
    a = only(capture_analytics)["attributes"]
    assert a["analytics.usage.status"] == "missing"
    assert "gen_ai.usage.input_tokens" not in a
    assert "gen_ai.usage.output_tokens" not in a
    assert "analytics.cost.micro_cents" not in a


def test_invalid_token_counts_are_ignored(capture_analytics: CaptureAnalytics) -> None:
    with oa.interaction("chat", model="gpt-4o") as it:
        it.record_usage(prompt_tokens=-5, completion_tokens="7", cache_read_tokens=True)  # type: ignore[arg-type]
    a = only(capture_analytics)["attributes"]
    assert a["analytics.usage.status"] == "invalid"  # given, and not counts: dropped and flagged
    assert "gen_ai.usage.input_tokens" not in a and "gen_ai.usage.output_tokens" not in a
    assert "gen_ai.usage.cache_read.input_tokens" not in a


def test_sync_function_reads_usage_from_sdk_like_object(capture_analytics: CaptureAnalytics) -> None:
    reply = SimpleNamespace(
        id="msg_1",
        type="message",
        model="claude-3-5-sonnet-20241022",
        stop_reason="end_turn",
        usage=SimpleNamespace(
            input_tokens=100, output_tokens=20, cache_read_input_tokens=1000, cache_creation_input_tokens=50
        ),
    )

    @oa.interaction("chat", model="claude-3-5-sonnet-20241022")
    def call() -> SimpleNamespace:
        return reply

    assert call() is reply
    assert call.__name__ == "call"
    a = only(capture_analytics)["attributes"]
    assert a["gen_ai.usage.input_tokens"] == 1150  # cached tokens included, as the conventions want
    assert a["gen_ai.usage.cache_read.input_tokens"] == 1000
    assert a["gen_ai.usage.cache_write.input_tokens"] == 50
    assert a["gen_ai.usage.output_tokens"] == 20
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",)
    # Sonnet 3.5: $3/M in, $0.3/M cache read, $3.75/M cache write, $15/M out.
    assert a["analytics.cost.micro_cents"] == round(100 * 0.3) + round(1000 * 0.03) + round(50 * 0.375) + round(
        20 * 1.5
    )


def test_explicit_record_usage_wins_over_the_return_value(capture_analytics: CaptureAnalytics) -> None:
    @oa.interaction("chat", model="gpt-4o")
    def call() -> dict[str, Any]:
        trace_span = trace.get_current_span()
        assert trace_span.is_recording()
        return OPENAI_REPLY

    with oa.interaction("chat", model="gpt-4o") as it:
        it.record_usage(input_tokens=1, output_tokens=2)
        it.record_response({"usage": {"prompt_tokens": 9}})  # later, explicit responses still merge
    call()
    first, second = capture_analytics.spans(type="chat")
    assert first["attributes"]["gen_ai.usage.input_tokens"] == 9
    assert second["attributes"]["gen_ai.usage.input_tokens"] == 1000


def test_exception_is_recorded_and_reraised_unchanged(capture_analytics: CaptureAnalytics) -> None:
    error = KeyError("boom")

    @oa.interaction("db", name="messages.insert", write_ops=1)
    def save() -> None:
        raise error

    with pytest.raises(KeyError) as caught:
        save()
    assert caught.value is error
    span = only(capture_analytics, "db")
    assert span["name"] == "db messages.insert"
    assert span["status"] == "ERROR"
    assert span["events"] == ["exception"]
    assert span["attributes"]["error.type"] == "KeyError"
    assert span["attributes"]["analytics.outcome"] == "failed"
    assert span["attributes"]["analytics.db.write_ops"] == 1


@pytest.mark.anyio
async def test_async_function_and_async_context_manager(capture_analytics: CaptureAnalytics) -> None:
    @oa.interaction("chat", model="gpt-4o")
    async def call() -> dict[str, Any]:
        await asyncio.sleep(0)
        return OPENAI_REPLY

    assert await call() == OPENAI_REPLY
    async with oa.interaction("api", call_count=3) as it:
        it.set_attribute("custom", 1)
    assert only(capture_analytics, "chat")["attributes"]["gen_ai.usage.output_tokens"] == 100
    api = only(capture_analytics, "api")
    assert api["attributes"]["analytics.api.call_count"] == 3
    assert api["attributes"]["custom"] == 1


@pytest.mark.anyio
async def test_cancellation_ends_the_span_as_cancelled(capture_analytics: CaptureAnalytics) -> None:
    started = asyncio.Event()

    @oa.interaction("chat", model="gpt-4o")
    async def slow() -> None:
        started.set()
        await asyncio.sleep(30)

    task = asyncio.create_task(slow())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = only(capture_analytics)
    assert span["attributes"]["analytics.outcome"] == "cancelled"
    assert span["status"] == "ERROR"


def chunk(content: str | None = None, usage: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-s",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [] if usage else [{"delta": {"content": content}, "finish_reason": None}],
        "usage": usage,
    }


def test_generator_span_ends_on_exhaustion_with_streamed_usage(capture_analytics: CaptureAnalytics) -> None:
    @oa.interaction("chat", model="gpt-4o-mini")
    def stream() -> Iterator[dict[str, Any]]:
        assert trace.get_current_span().is_recording()
        yield chunk("a")
        yield chunk("b")
        yield chunk(usage={"prompt_tokens": 10, "completion_tokens": 2})

    gen = stream()
    assert capture_analytics.spans(type="chat") == []  # nothing has run yet
    items = list(gen)
    assert len(items) == 3
    a = only(capture_analytics)["attributes"]
    assert a["gen_ai.usage.input_tokens"] == 10
    assert a["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert a["analytics.outcome"] == "completed"


def test_generator_closed_early_ends_the_span(capture_analytics: CaptureAnalytics) -> None:
    closed = []

    @oa.interaction("chat", model="gpt-4o")
    def stream() -> Generator[int, None, None]:
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    gen = stream()
    assert next(gen) == 1
    gen.close()
    assert closed == [True]
    span = only(capture_analytics)
    assert span["attributes"]["analytics.outcome"] == "closed"
    assert span["status"] == "UNSET"


def test_generator_send_throw_and_return_value_pass_through(capture_analytics: CaptureAnalytics) -> None:
    @oa.interaction("api")
    def echo() -> Generator[Any, Any, str]:
        received = yield "ready"
        try:
            yield f"got {received}"
        except ValueError as exc:
            yield f"caught {exc}"
        return "done"

    def driver() -> Generator[Any, Any, None]:
        result = yield from echo()
        yield result

    gen = driver()
    assert next(gen) == "ready"
    assert gen.send("x") == "got x"
    assert gen.throw(ValueError("v")) == "caught v"
    assert next(gen) == "done"
    assert only(capture_analytics, "api")["attributes"]["analytics.outcome"] == "completed"


def test_abandoned_generator_is_ended_when_collected(capture_analytics: CaptureAnalytics) -> None:
    @oa.interaction("db")
    def rows() -> Iterator[int]:
        yield from range(10)

    gen = rows()
    next(gen)
    del gen
    gc.collect()
    assert only(capture_analytics, "db")["attributes"]["analytics.outcome"] == "closed"


def test_a_generator_body_keeps_its_own_context_across_yields_and_never_leaks_it(
    capture_analytics: CaptureAnalytics, caplog: pytest.LogCaptureFixture
) -> None:
    """The body runs in a context of its own, as a task does: a span it makes current before a
    yield is still current after it, and the consumer never sees it."""
    tracer = capture_analytics.provider.get_tracer("test")

    @oa.interaction("chat", model="gpt-4o")
    def stream() -> Iterator[int]:
        with tracer.start_as_current_span("body") as body:
            yield 1
            assert trace.get_current_span() is body  # its own span, after the yield
            with oa.interaction("db"):
                pass
            yield 2

    with oa.session("conv-ctx", user_id="u", start=False, end=False):
        for _ in stream():
            assert not trace.get_current_span().is_recording()  # nothing leaked to the consumer
    db = only(capture_analytics, "db")
    body = next(span for span in capture_analytics.finished() if span.name == "body")
    assert db["parent_span_id"] == format(body.context.span_id, "016x")
    assert db["attributes"]["session.id"] == "conv-ctx"
    assert "Failed to detach context" not in caplog.text


@pytest.mark.anyio
async def test_async_generator_exhaustion_and_nested_spans(capture_analytics: CaptureAnalytics) -> None:
    @oa.interaction("chat", model="gpt-4o-mini")
    async def stream() -> AsyncIterator[dict[str, Any]]:
        with oa.interaction("db", read_ops=1):  # a child of the chat span
            await asyncio.sleep(0)
        yield chunk("a")
        yield chunk(usage={"prompt_tokens": 4, "completion_tokens": 1})

    with oa.session("conv-s", user_id="u", start=False, end=False):
        items = [item async for item in stream()]
    assert len(items) == 2
    chat = only(capture_analytics)
    db = only(capture_analytics, "db")
    assert db["parent_span_id"] == chat["span_id"]
    assert chat["attributes"]["gen_ai.usage.output_tokens"] == 1
    assert chat["attributes"]["session.id"] == "conv-s"
    assert db["attributes"]["session.id"] == "conv-s"


@pytest.mark.anyio
async def test_async_generator_aclose_and_exception(capture_analytics: CaptureAnalytics) -> None:
    cleaned = []

    @oa.interaction("chat", model="gpt-4o")
    async def stream() -> AsyncGenerator[int, None]:
        try:
            yield 1
            yield 2
        finally:
            cleaned.append(True)

    gen = stream()
    assert await gen.__anext__() == 1
    await gen.aclose()
    assert cleaned == [True]

    @oa.interaction("chat", model="gpt-4o")
    async def broken() -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("upstream died")

    with pytest.raises(RuntimeError, match="upstream died"):
        async for _ in broken():
            pass
    first, second = capture_analytics.spans(type="chat")
    assert first["attributes"]["analytics.outcome"] == "closed"
    assert second["attributes"]["analytics.outcome"] == "failed"
    assert second["status"] == "ERROR"


@pytest.mark.anyio
async def test_async_generator_keeps_asyncio_timeout_and_current_task(
    capture_analytics: CaptureAnalytics,
) -> None:
    tasks = set()

    @oa.interaction("chat", model="gpt-4o")
    async def stream() -> AsyncIterator[int]:
        tasks.add(asyncio.current_task())
        yield 1
        tasks.add(asyncio.current_task())
        await asyncio.sleep(30)
        yield 2

    consumed = []
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            async for item in stream():
                consumed.append(item)
    assert consumed == [1]
    assert tasks == {asyncio.current_task()}  # no task per __anext__
    assert only(capture_analytics)["attributes"]["analytics.outcome"] == "cancelled"


@pytest.mark.anyio
async def test_async_generator_cleanup_never_runs_in_another_context(
    capture_analytics: CaptureAnalytics,
) -> None:
    @oa.interaction("chat", model="gpt-4o")
    async def stream() -> AsyncIterator[int]:
        yield 1
        yield 2

    async def request_one() -> Any:
        with oa.session("conv-a", user_id="a", start=False, end=False):
            gen = stream()
            await gen.__anext__()
            return gen  # abandoned mid-stream

    gen = await request_one()
    with oa.session("conv-b", user_id="b", start=False, end=False):
        await gen.aclose()  # closed later, from another request's context
        with oa.interaction("db"):
            pass
    chat = only(capture_analytics)
    db = only(capture_analytics, "db")
    assert chat["attributes"]["session.id"] == "conv-a"
    assert chat["attributes"]["analytics.outcome"] == "closed"
    assert db["attributes"]["session.id"] == "conv-b"  # conv-b's context was left intact
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_one_interaction_object_serves_nested_and_reused_with_blocks(
    capture_analytics: CaptureAnalytics,
) -> None:
    db = oa.interaction("db")
    with db, db:
        pass
    with db:
        pass
    spans = capture_analytics.spans(type="db")
    assert len(spans) == 3
    assert spans[0]["parent_span_id"] == spans[1]["span_id"]


def test_invalid_interaction_arguments_fail_at_definition() -> None:
    with pytest.raises(ValueError, match="Invalid interaction type"):
        oa.interaction("bogus")
    with pytest.raises(ValueError, match="analytics.db.read_ops"):
        oa.interaction("db", read_ops=-1)
    with pytest.raises(ValueError, match="analytics.api.call_count"):
        oa.interaction("api", call_count=0)


def test_content_capture_is_opt_in(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    capture = CaptureAnalytics()
    try:

        @oa.interaction("chat", model="gpt-4o")
        def call(messages: list[dict[str, str]]) -> dict[str, Any]:
            return OPENAI_REPLY

        call(messages=[{"role": "user", "content": "hello"}])
        a = only(capture)["attributes"]
        assert "hello" in a["gen_ai.input.messages"]
        assert '"content": "hi"' in a["gen_ai.output.messages"]
    finally:
        capture.close()


def test_one_interaction_object_shared_by_threads(capture_analytics: CaptureAnalytics) -> None:
    import threading

    shared = oa.interaction("db")
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            start.wait()
            for _ in range(50):
                with shared:
                    pass
        except BaseException as exc:  # pragma: no cover - what the test looks for
            errors.append(exc)

    in_threads(work, 8)
    assert errors == []
    assert len(capture_analytics.spans(type="db")) == 400
