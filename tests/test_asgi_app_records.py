"""A chat request whose app records its own chat interactions: each exchange is counted once.

The middleware records a chat request from what its answer shows; an app may also record the LLM
call behind it (``oa.interaction("chat")``, ``track_interaction``). When the answer shows no token
counts, or shows the very response the app recorded (its id), the app's records stand alone.
Counts of another response are kept: they may be another call's, and are never dropped.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import otel_analytics as oa
from otel_analytics.asgi import AnalyticsMiddleware
from otel_analytics.testing import CaptureAnalytics
from tests.asgi_client import call

pytestmark = pytest.mark.anyio
BODY = b'{"conversationId": "conv-own", "model": "gpt-4o-mini"}'


def completion(response_id: str) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37},
    }


def app_with(endpoint: Any) -> AnalyticsMiddleware:
    return AnalyticsMiddleware(
        Starlette(routes=[Route("/api/messages", endpoint, methods=["POST"])]), server_span=False
    )


def chat_tokens(capture: CaptureAnalytics) -> list[tuple[int | None, int | None]]:
    return [
        (span["attributes"].get("gen_ai.usage.input_tokens"), span["attributes"].get("gen_ai.usage.output_tokens"))
        for span in capture.spans(type="chat")
    ]


def report_and_answer() -> Response:
    oa.track_interaction(type="chat", model_name="gpt-4o", prompt_tokens=120, completion_tokens=40)
    return JSONResponse({"text": "Hi", "conversationId": "conv-own"})


async def async_endpoint(request: Request) -> Response:
    await request.body()
    return report_and_answer()


async def proxied_completion(request: Request) -> Response:
    """A proxy that records its upstream call and passes the completion on as it came."""
    await request.body()
    with oa.interaction("chat", model="gpt-4o-mini") as it:
        upstream = completion("chatcmpl-proxied")
        it.record_response(upstream)
    return JSONResponse(upstream)


def sync_endpoint(request: Request) -> Response:  # Starlette runs it in a thread, in a copied context
    return report_and_answer()


@pytest.mark.parametrize("endpoint", [async_endpoint, sync_endpoint], ids=["async", "sync"])
async def test_an_answer_without_usage_defers_to_the_apps_own_chat_record(
    capture_analytics: CaptureAnalytics, endpoint: Any
) -> None:
    # LibreChat-shaped: the backend reports its LLM calls with track_interaction and answers in
    # its own format. The middleware's record of the request would be a second chat interaction.
    await call(app_with(endpoint), "POST", "/api/messages", body=BODY)
    (span,) = capture_analytics.spans(type="chat")
    assert (span["attributes"]["gen_ai.usage.input_tokens"], span["attributes"]["session.id"]) == (120, "conv-own")


async def test_the_response_the_app_recorded_is_counted_once(capture_analytics: CaptureAnalytics) -> None:
    await call(app_with(proxied_completion), "POST", "/api/messages", body=BODY)
    assert chat_tokens(capture_analytics) == [(30, 7)]


@pytest.mark.parametrize(("said", "counted"), [(True, [(30, 7)]), (False, [(30, 7), (30, 7)])], ids=["id", "no-id"])
async def test_a_response_reported_with_track_interaction_is_counted_once_by_its_id(
    capture_analytics: CaptureAnalytics, said: bool, counted: list[tuple[int, int]]
) -> None:
    # A proxy that reports its upstream call with the client API: given the response's id, the
    # middleware knows the answer is that call; without it, the answer's counts may be another
    # call's, and are kept.
    async def endpoint(request: Request) -> Response:
        await request.body()
        upstream = completion("chatcmpl-tracked")
        oa.track_interaction(
            model_name="gpt-4o-mini",
            prompt_tokens=30,
            completion_tokens=7,
            response_id=upstream["id"] if said else None,
        )
        return JSONResponse(upstream)

    await call(app_with(endpoint), "POST", "/api/messages", body=BODY)
    assert chat_tokens(capture_analytics) == counted


async def test_a_streamed_response_the_app_recorded_is_counted_once(capture_analytics: CaptureAnalytics) -> None:
    chunks: list[dict[str, Any]] = [
        {"id": "chatcmpl-streamed", "model": "gpt-4o-mini", "choices": [{"delta": {"content": "Hi"}}], "usage": None},
        {"id": "chatcmpl-streamed", "model": "gpt-4o-mini", "choices": [{"delta": {}, "finish_reason": "stop"}]},
        {
            "id": "chatcmpl-streamed",
            "model": "gpt-4o-mini",
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3},
        },
    ]

    @oa.interaction("chat", model="gpt-4o-mini")
    async def upstream() -> AsyncIterator[dict[str, Any]]:  # its span ends when the stream does
        for chunk in chunks:
            yield chunk

    async def events() -> AsyncIterator[bytes]:
        async for chunk in upstream():
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def endpoint(request: Request) -> Response:
        await request.body()
        return StreamingResponse(events(), media_type="text/event-stream")

    await call(app_with(endpoint), "POST", "/api/messages", body=BODY)
    assert chat_tokens(capture_analytics) == [(9, 3)]


async def test_counts_of_another_response_are_kept(capture_analytics: CaptureAnalytics) -> None:
    # The app records one call (a title, say); the answer carries another's counts: both stand.
    async def endpoint(request: Request) -> Response:
        await request.body()
        with oa.interaction("chat", model="gpt-4o-mini") as it:
            it.record_response({**completion("chatcmpl-title"), "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
        return JSONResponse(completion("chatcmpl-answer"))

    await call(app_with(endpoint), "POST", "/api/messages", body=BODY)
    assert sorted(chat_tokens(capture_analytics)) == [(5, 2), (30, 7)]


async def test_other_interactions_of_the_app_leave_the_request_recorded(capture_analytics: CaptureAnalytics) -> None:
    async def endpoint(request: Request) -> Response:
        await request.body()
        oa.track_db_operation(read_ops=2, write_ops=1)
        oa.track_api_call(call_count=1)
        return JSONResponse(completion("chatcmpl-only"))

    await call(app_with(endpoint), "POST", "/api/messages", body=BODY)
    assert chat_tokens(capture_analytics) == [(30, 7)]
    assert len(capture_analytics.spans(type="db")) == len(capture_analytics.spans(type="api")) == 1


async def test_a_chat_recorded_outside_a_request_does_not_touch_the_next_one(
    capture_analytics: CaptureAnalytics,
) -> None:
    oa.track_interaction(session_id="conv-before", type="chat", prompt_tokens=1, completion_tokens=1)

    async def endpoint(request: Request) -> Response:
        await request.body()
        return JSONResponse({"text": "no usage here"})

    await call(app_with(endpoint), "POST", "/api/messages", body=BODY)
    sessions = sorted(span["attributes"]["session.id"] for span in capture_analytics.spans(type="chat"))
    assert sessions == ["conv-before", "conv-own"]


def with_server_span(endpoint: Any) -> AnalyticsMiddleware:
    """The app behind the middleware that adds the request's server span itself."""
    return AnalyticsMiddleware(Starlette(routes=[Route("/api/messages", endpoint, methods=["POST"])]))


def request_links(capture: CaptureAnalytics) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The server span's links, and every finished span by id."""
    spans = capture.spans()
    (server,) = [span for span in spans if span["kind"] == "SERVER"]
    return server["links"], {span["span_id"]: span for span in spans}


@pytest.mark.parametrize("endpoint", [async_endpoint, sync_endpoint, proxied_completion], ids=["track", "sync", "live"])
async def test_the_request_span_links_to_the_chat_the_app_recorded(
    capture_analytics: CaptureAnalytics, endpoint: Any
) -> None:
    # The middleware links the request's span to its interaction before the app runs; when it
    # defers to the app's record, that link points at the app's chat, never at a span never made.
    await call(with_server_span(endpoint), "POST", "/api/messages", body=BODY)
    links, spans = request_links(capture_analytics)
    (chat,) = capture_analytics.spans(type="chat")
    assert links == [chat["span_id"]]
    assert [spans[link]["attributes"].get("analytics.interaction.type") for link in chat["links"]] == [None]
    assert chat["trace_id"] == format(oa.session_trace_id("conv-own"), "032x")


async def test_a_streamed_chat_the_app_recorded_takes_the_request_link(capture_analytics: CaptureAnalytics) -> None:
    @oa.interaction("chat", model="gpt-4o-mini")
    async def upstream() -> AsyncIterator[dict[str, Any]]:
        yield {"id": "chatcmpl-s", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}

    async def events() -> AsyncIterator[bytes]:
        async for chunk in upstream():
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"

    async def endpoint(request: Request) -> Response:
        await request.body()
        return StreamingResponse(events(), media_type="text/event-stream")

    await call(with_server_span(endpoint), "POST", "/api/messages", body=BODY)
    links, _ = request_links(capture_analytics)
    (chat,) = capture_analytics.spans(type="chat")
    assert links == [chat["span_id"]]


async def test_when_both_records_stand_every_request_link_resolves(capture_analytics: CaptureAnalytics) -> None:
    # The app's chat (a title) takes the request's link; the middleware's record of the answer,
    # kept, gets an id of its own and links to the request's span.
    async def endpoint(request: Request) -> Response:
        await request.body()
        oa.track_interaction(model_name="gpt-4o-mini", prompt_tokens=5, completion_tokens=2)
        oa.track_interaction(model_name="gpt-4o-mini", prompt_tokens=6, completion_tokens=1)
        return JSONResponse(completion("chatcmpl-answer"))

    await call(with_server_span(endpoint), "POST", "/api/messages", body=BODY)
    links, spans = request_links(capture_analytics)
    chats = {span["attributes"]["gen_ai.usage.input_tokens"]: span for span in capture_analytics.spans(type="chat")}
    assert sorted(chats) == [5, 6, 30]
    assert links == [chats[5]["span_id"], chats[6]["span_id"]]  # the second app chat linked back itself
    (server_id,) = chats[30]["links"]
    assert spans[server_id]["kind"] == "SERVER"


async def test_an_app_instrumented_inside_gets_no_link_to_a_deferred_record(
    capture_analytics: CaptureAnalytics,
) -> None:
    # The app's own server span starts inside the middleware, which links to it when the answer
    # starts: by then the app has recorded its chat and linked it back itself.
    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    api = FastAPI()

    @api.post("/api/messages")
    async def reply() -> dict[str, Any]:
        oa.track_interaction(model_name="gpt-4o", prompt_tokens=120, completion_tokens=40)
        return {"text": "Hi"}

    FastAPIInstrumentor.instrument_app(
        api, tracer_provider=capture_analytics.provider, exclude_spans=["receive", "send"]
    )
    try:
        await call(AnalyticsMiddleware(api), "POST", "/api/messages", body=BODY)
        links, _ = request_links(capture_analytics)
        (chat,) = capture_analytics.spans(type="chat")
        assert links == [chat["span_id"]]
    finally:
        FastAPIInstrumentor.uninstrument_app(api)


async def test_chats_recorded_on_threads_at_once_get_one_span_id_each(capture_analytics: CaptureAnalytics) -> None:
    # An app that fans its LLM calls out to threads (each in a copy of the request's context):
    # one of them takes the request's link, and no two spans share an id.
    import contextvars
    import sys
    from concurrent.futures import ThreadPoolExecutor

    switch = sys.getswitchinterval()

    def report(tokens: int) -> None:
        oa.track_interaction(model_name="gpt-4o-mini", prompt_tokens=tokens, completion_tokens=1)

    async def endpoint(request: Request) -> Response:
        await request.body()
        with ThreadPoolExecutor(8) as pool:
            for tokens in range(1, 33):
                pool.submit(contextvars.copy_context().run, report, tokens)
        return JSONResponse({"text": "Hi"})

    sys.setswitchinterval(1e-6)  # threads interleave as often as they can
    try:
        await call(with_server_span(endpoint), "POST", "/api/messages", body=BODY)
    finally:
        sys.setswitchinterval(switch)
    links, _ = request_links(capture_analytics)
    chats = capture_analytics.spans(type="chat")
    assert len(chats) == 32
    assert len({chat["span_id"] for chat in chats}) == 32
    assert links[0] in {chat["span_id"] for chat in chats}
    assert len(set(links)) == len(links) == 32
