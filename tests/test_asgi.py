"""The middleware over the ASGI protocol: what it records, and that the app and client see no change."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
from collections.abc import MutableMapping
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import otel_analytics as oa
from otel_analytics import _guard
from otel_analytics.asgi import AnalyticsMiddleware, RouteRule
from otel_analytics.testing import CaptureAnalytics
from tests.asgi_client import Exchange, ReceiveLog, call, http_scope
from tests.chat_apps import build, gzipped

pytestmark = pytest.mark.anyio
USER = [(b"x-user-id", b"u1")]


def chats(capture: CaptureAnalytics) -> list[dict[str, Any]]:
    return capture.spans(type="chat")


async def sse_bare_and_through(body: bytes) -> tuple[Exchange, Exchange]:
    """The SSE answer of the bare app, and of the same app behind the middleware given ``body``."""
    bare = await call(build(), "POST", "/api/messages", query=b"shape=sse", body=b"{}")
    app = AnalyticsMiddleware(build(), server_span=False)
    return bare, await call(app, "POST", "/api/messages", query=b"shape=sse", body=body)


async def session_and_model(capture: CaptureAnalytics, body: list[bytes]) -> tuple[str, str]:
    """The session and request model recorded for a request ``body`` (sent in these messages),
    after checking that the app received it whole."""
    app = build()
    await call(AnalyticsMiddleware(app, server_span=False), "POST", "/api/messages", body=body, headers=USER)
    assert app.state.recorder.request_bodies == [b"".join(body)]
    (span,) = chats(capture)
    return span["attributes"]["session.id"], span["attributes"]["gen_ai.request.model"]


async def test_json_chat_records_model_usage_session_and_user(capture_analytics: CaptureAnalytics) -> None:
    bare = await call(build(), "POST", "/api/messages", body=b'{"conversationId": "conv-1", "model": "gpt-4o-mini"}')
    app = AnalyticsMiddleware(build(), server_span=False)
    seen = await call(
        app,
        "POST",
        "/api/messages",
        headers=USER,
        body=b'{"conversationId": "conv-1", "model": "gpt-4o-mini", "text": "hi"}',
    )
    assert seen.sent == bare.sent  # the client receives exactly the same messages
    (span,) = chats(capture_analytics)
    a = span["attributes"]
    assert span["name"] == "chat gpt-4o-mini"
    assert span["trace_id"] == format(oa.session_trace_id("conv-1"), "032x")
    assert (a["session.id"], a["user.id"]) == ("conv-1", "u1")
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (1200, 80)
    assert a["gen_ai.usage.cache_read.input_tokens"] == 200
    assert a["gen_ai.response.id"] == "chatcmpl-42"
    assert a["analytics.cost.micro_cents"] == round(1000 * 0.015) + round(200 * 0.0075) + round(80 * 0.06)
    assert json.loads(a["analytics.metadata"]) == {"endpoint": "/api/messages", "method": "POST"}


async def test_the_app_receives_exactly_the_same_request_messages(capture_analytics: CaptureAnalytics) -> None:
    parts = [b'{"conversationId": "conv-2", ', b'"model": "gpt-4o", ', b'"text": "' + b"x" * 70_000 + b'"}']
    for body in (b'{"conversationId": "conv-2"}', parts, [b"not json at all"], [b"\xff\xfe\x00"]):
        bare_log, wrapped_log = ReceiveLog(build()), ReceiveLog(build())
        await call(bare_log, "POST", "/api/messages", body=body)
        await call(AnalyticsMiddleware(wrapped_log, server_span=False), "POST", "/api/messages", body=body)
        assert wrapped_log.messages == bare_log.messages
        assert wrapped_log.app.state.recorder.request_bodies == bare_log.app.state.recorder.request_bodies


@pytest.mark.parametrize(
    "shape", ["json", "sse", "sse-nousage", "anthropic", "wrong-types", "garbage", "error", "raise", "echo-model"]
)
async def test_the_values_the_middleware_vouches_for_are_plain(capture_analytics: CaptureAnalytics, shape: str) -> None:
    # emit_interaction(plain=True) skips the SDK's value check: every value must be one it keeps.
    from otel_analytics.finished_spans import _plain

    body = b'{"conversationId": "conv-plain", "model": "gpt-4o-mini", "stream": true, "conversation_id": [1]}'
    headers = [(b"x-user-id", "Zoë".encode("latin-1")), (b"x-session-id", b"s")]
    with contextlib.suppress(Exception):
        await call(
            AnalyticsMiddleware(build()),
            "POST",
            "/api/messages",
            query=f"shape={shape}".encode(),
            body=body,
            headers=headers,
        )
    spans = [span for span in capture_analytics.finished() if span.name.startswith("chat")]
    assert spans and all(_plain(dict(span.attributes or {})) for span in spans)


@pytest.mark.parametrize("parts", [1, 2, 5])
async def test_a_small_body_is_read_however_many_messages_carry_it(
    capture_analytics: CaptureAnalytics, parts: int
) -> None:
    body = b'{"conversationId": "conv-parts", "model": "gpt-4o-mini", "stream": false}'
    size = -(-len(body) // parts)
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    assert await session_and_model(capture_analytics, chunks) == ("conv-parts", "gpt-4o-mini")


async def test_a_request_with_its_whole_history_is_read_for_its_keys_alone(
    capture_analytics: CaptureAnalytics,
) -> None:
    # As OpenAI's SDK orders it: the history first, the keys read after it. A byte that is not
    # UTF-8 inside a message (which Python's and orjson's JSON refuse) does not hide them.
    history = [{"role": "user", "content": f"turn {i} " + "word " * 80} for i in range(100)]
    body = json.dumps({"messages": history}).encode()[:-1]
    body = body.replace(b"turn 50 ", b"turn \xff ")
    body += b', "model": "gpt-4o-mini", "stream": false, "conversation_id": "conv-history"}'
    assert len(body) > 40_000 and b"\xff" in body
    assert await session_and_model(capture_analytics, [body]) == ("conv-history", "gpt-4o-mini")


@pytest.mark.parametrize("body", ["a str", 123, [b"{}"], bytearray(b'{"model": "m"}'), "no message", "no type"])
@pytest.mark.parametrize("messages", [1, 2])
async def test_a_body_that_is_not_bytes_reaches_the_app_as_it_is(
    capture_analytics: CaptureAnalytics, body: Any, messages: int
) -> None:
    # Not what ASGI sends (bytes in a message), but what a broken server or an outer middleware
    # might: the app gets it untouched, and analytics neither reads it nor raises.
    sent: list[Any] = [{"type": "http.request", "body": b"{", "more_body": True}] if messages == 2 else []
    if body == "no message":
        sent.append(["not", "a", "message"])
    elif body == "no type":
        sent.append({"body": b"{}"})
    else:
        sent.append({"type": "http.request", "body": body, "more_body": False})
    sent.append(("not", "a", "message"))  # reaches the app past the read-ahead
    queue, received = list(sent), []

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        for _ in sent:
            received.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        pass

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/messages",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    await AnalyticsMiddleware(app, server_span=False)(scope, receive, send)
    assert received == sent
    (span,) = chats(capture_analytics)
    assert span["attributes"]["analytics.outcome"] == "completed"
    assert span["attributes"]["session.id"].startswith("session-")  # nothing read: a fallback


async def test_a_long_conversation_is_read_up_to_the_inspection_cap(capture_analytics: CaptureAnalytics) -> None:
    # 300 KB of history, in 16 KB messages: under ANALYTICS_INSPECT_BYTES (1 MiB), so still read.
    body = json.dumps({"messages": ["z" * 1000] * 300, "conversation_id": "conv-long", "model": "gpt-4o"}).encode()
    chunks = [body[i : i + 16_384] for i in range(0, len(body), 16_384)]
    assert await session_and_model(capture_analytics, chunks) == ("conv-long", "gpt-4o")


async def test_large_request_is_replayed_and_the_rest_flows_live(capture_analytics: CaptureAnalytics) -> None:
    # Over the read-ahead cap (the inspection cap): nothing is parsed, but the app still gets every byte.
    big = [b'{"conversationId": "conv-big", "text": "', b"y" * 100_000, b'"}']
    app = build()
    middleware = AnalyticsMiddleware(app, server_span=False, inspect_bytes=64 * 1024)
    await call(middleware, "POST", "/api/messages", body=big, headers=USER)
    assert app.state.recorder.request_bodies == [b"".join(big)]
    (span,) = chats(capture_analytics)
    assert span["attributes"]["session.id"].startswith("session-")  # not read: a fallback session


@pytest.mark.parametrize("declared", [b"10000000", b"70000"])
async def test_a_body_declared_over_the_cap_is_not_waited_for(
    capture_analytics: CaptureAnalytics, declared: bytes
) -> None:
    # An app that answers on the headers alone (a 401, a 413, an Expect: 100-continue declined),
    # to a client that declared more than would be read and has sent only the start of it: the
    # middleware must not wait for a body it would not parse anyway.
    async def refuse(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 413, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    first = {"type": "http.request", "body": b'{"conversationId": "conv-big", "text": "', "more_body": True}
    pending = [first]  # what the client has sent: the start of its body
    sent: list[dict[str, Any]] = []
    rest = asyncio.Event()  # the rest of the body never comes

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await rest.wait()
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = http_scope("POST", "/api/messages", headers=[(b"content-length", declared)])
    middleware = AnalyticsMiddleware(refuse, server_span=False, inspect_bytes=64 * 1024)
    await asyncio.wait_for(middleware(scope, receive, send), timeout=5)
    assert [m.get("status") for m in sent] == [413, None] and pending == [first]  # not even read
    (span,) = chats(capture_analytics)
    assert span["attributes"]["analytics.outcome"] == "completed"


@pytest.mark.parametrize("declared", [b"57", b"", b"abc", b"-5", b"\xd9\xa5", "57", 57])
async def test_a_body_declared_within_the_cap_or_unreadably_is_still_read(
    capture_analytics: CaptureAnalytics, declared: Any
) -> None:
    body = b'{"conversationId": "conv-declared", "model": "gpt-4o-mini"}'
    headers = [*USER, (b"content-length", declared)]
    await call(AnalyticsMiddleware(build(), server_span=False), "POST", "/api/messages", body=[body], headers=headers)
    (span,) = chats(capture_analytics)
    assert span["attributes"]["session.id"] == "conv-declared"


async def test_a_declared_length_of_thousands_of_digits_is_over_the_cap(capture_analytics: CaptureAnalytics) -> None:
    # int() refuses to read 4,300 digits or more (CPython's guard against slow conversions).
    app = build()
    headers = [(b"content-length", b"9" * 5000)]
    await call(AnalyticsMiddleware(app, server_span=False), "POST", "/api/messages", body=b"{}", headers=headers)
    assert app.state.recorder.request_bodies == [b"{}"]
    (span,) = chats(capture_analytics)
    assert span["attributes"]["session.id"].startswith("session-")  # not read ahead


async def test_sse_stream_with_a_usage_chunk(capture_analytics: CaptureAnalytics) -> None:
    bare, seen = await sse_bare_and_through(b'{"conversationId": "conv-s", "model": "gpt-4o-mini", "stream": true}')
    assert seen.sent == bare.sent
    assert len(seen.sent) == 23  # start, 21 events, the empty last body: forwarded one by one
    (span,) = chats(capture_analytics)
    a = span["attributes"]
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (300, 19)
    assert a["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.request.stream"] is True
    assert a["analytics.outcome"] == "completed"


async def test_sse_stream_without_usage_marks_tokens_missing(capture_analytics: CaptureAnalytics) -> None:
    await call(
        AnalyticsMiddleware(build(), server_span=False),
        "POST",
        "/api/messages",
        query=b"shape=sse-nousage",
        body=b'{"conversationId": "conv-n", "model": "gpt-4o-mini", "stream": true}',
    )
    a = chats(capture_analytics)[0]["attributes"]
    assert a["analytics.usage.status"] == "missing"
    assert "gen_ai.usage.input_tokens" not in a
    assert a["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"


async def test_anthropic_stream(capture_analytics: CaptureAnalytics) -> None:
    await call(
        AnalyticsMiddleware(build(), server_span=False),
        "POST",
        "/api/messages",
        query=b"shape=anthropic",
        body=b'{"conversationId": "conv-a", "model": "claude-3-5-haiku-20241022", "stream": true}',
    )
    a = chats(capture_analytics)[0]["attributes"]
    assert a["gen_ai.provider.name"] == "anthropic"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (125, 15)
    assert a["gen_ai.usage.cache_read.input_tokens"] == 100
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",)


async def test_gzip_json_passes_untouched_and_is_still_read(capture_analytics: CaptureAnalytics) -> None:
    body = b'{"conversationId": "conv-g", "model": "gpt-4o-mini"}'
    headers = [(b"accept-encoding", b"gzip")]
    bare = await call(gzipped(build()), "POST", "/api/messages", body=body, headers=headers)
    seen = await call(
        AnalyticsMiddleware(gzipped(build()), server_span=False), "POST", "/api/messages", body=body, headers=headers
    )
    assert seen.headers[b"content-encoding"] == b"gzip"
    assert seen.body == bare.body
    assert json.loads(gzip.decompress(seen.body))["id"] == "chatcmpl-42"
    assert chats(capture_analytics)[0]["attributes"]["gen_ai.usage.output_tokens"] == 80


@pytest.mark.parametrize("shape", ["text", "garbage", "wrong-types", "huge"])
async def test_odd_bodies_pass_through_and_record_no_tokens(capture_analytics: CaptureAnalytics, shape: str) -> None:
    body = b'{"conversationId": "conv-o", "model": "gpt-4o"}'
    bare = await call(build(), "POST", "/api/messages", query=f"shape={shape}".encode(), body=body)
    seen = await call(
        AnalyticsMiddleware(build(), server_span=False, inspect_bytes=1 << 20),
        "POST",
        "/api/messages",
        query=f"shape={shape}".encode(),
        body=body,
    )
    assert seen.sent == bare.sent
    a = chats(capture_analytics)[0]["attributes"]
    # Counts of the wrong type were given: dropped, and flagged (the others: none seen).
    assert a["analytics.usage.status"] == ("invalid" if shape == "wrong-types" else "missing")
    assert "gen_ai.usage.input_tokens" not in a and "gen_ai.usage.output_tokens" not in a
    assert a["gen_ai.request.model"] == "gpt-4o"  # the request's model is the fallback
    assert a["analytics.outcome"] == "completed"


async def test_error_status_marks_the_interaction_failed(capture_analytics: CaptureAnalytics) -> None:
    seen = await call(
        AnalyticsMiddleware(build(), server_span=False),
        "POST",
        "/api/messages",
        query=b"shape=error",
        body=b'{"conversationId": "conv-e"}',
    )
    assert seen.status == 429
    a = chats(capture_analytics)[0]["attributes"]
    assert (a["analytics.status"], a["error.type"]) == ("failed", "429")


async def test_app_exceptions_propagate_unchanged(capture_analytics: CaptureAnalytics) -> None:
    app = AnalyticsMiddleware(build(), server_span=False)
    with pytest.raises(RuntimeError, match="on fire"):
        await call(app, "POST", "/api/messages", query=b"shape=raise", body=b'{"conversationId": "conv-x"}')
    span = chats(capture_analytics)[0]
    assert span["status"] == "ERROR"
    assert span["attributes"]["error.type"] == "RuntimeError"
    assert span["events"] == ["exception"]


async def test_session_start_and_end_routes(capture_analytics: CaptureAnalytics) -> None:
    app = AnalyticsMiddleware(build(), server_span=False)
    await call(app, "POST", "/api/convos", body=b"{}", headers=USER)
    await call(app, "POST", "/api/messages", body=b'{"conversationId": "conv-from-response"}', headers=USER)
    await call(app, "POST", "/api/messages/conv-from-response", body=b"{}", headers=USER)
    await call(app, "DELETE", "/api/convos/conv-from-response", headers=USER, json_body=False)
    (start,) = capture_analytics.spans(event="start")
    (end,) = capture_analytics.spans(event="end")
    (root,) = capture_analytics.spans(event="root")
    assert start["attributes"]["session.id"] == "conv-from-response"
    assert start["attributes"]["user.id"] == "u1"
    assert json.loads(start["attributes"]["analytics.metadata"]) == {"endpoint": "/api/convos"}
    assert end["attributes"]["session.id"] == "conv-from-response"
    trace_id = format(oa.session_trace_id("conv-from-response"), "032x")
    assert {s["trace_id"] for s in capture_analytics.spans()} == {trace_id}  # one conversation, one trace
    assert len(chats(capture_analytics)) == 2
    assert root["start_time"] == start["start_time"]


async def test_session_and_user_sources(capture_analytics: CaptureAnalytics) -> None:
    class User:
        is_authenticated = True
        display_name = "dana"

    async def with_user(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["user"] = User()
        await AnalyticsMiddleware(build(), server_span=False)(scope, receive, send)

    await call(with_user, "POST", "/api/messages", body=b"{}", query=b"conversationId=conv-q")
    app = AnalyticsMiddleware(build(), server_span=False, user_id=lambda scope: "from-callable")
    await call(app, "POST", "/api/messages", body=b"{}", headers=[(b"x-session-id", b"conv-h")])
    await call(AnalyticsMiddleware(build(), server_span=False), "POST", "/api/messages", body=b"{}")
    first, second, third = chats(capture_analytics)
    assert (first["attributes"]["session.id"], first["attributes"]["user.id"]) == ("conv-q", "dana")
    assert (second["attributes"]["session.id"], second["attributes"]["user.id"]) == ("conv-h", "from-callable")
    assert third["attributes"]["user.id"] == "anonymous"
    assert third["attributes"]["session.id"].startswith("session-")


async def test_routes_from_code_and_configuration(
    capture_analytics: CaptureAnalytics, clean_env: pytest.MonkeyPatch
) -> None:
    app = AnalyticsMiddleware(build(), server_span=False, rules=[RouteRule("POST", "/api/other", "api")])
    await call(app, "POST", "/api/other", body=b"{}")
    await call(app, "POST", "/api/messages", body=b"{}")  # not in these rules: untouched
    assert [s["name"] for s in capture_analytics.spans()] == ["api"]
    capture_analytics.clear()
    capture_analytics.handle.shutdown()
    clean_env.setenv("ANALYTICS_ROUTES", "GET /api/other=db; POST /api/messages/*=ignore")
    capture = CaptureAnalytics()
    try:
        app = AnalyticsMiddleware(build(), server_span=False)
        await call(app, "GET", "/api/other", json_body=False)
        await call(app, "POST", "/api/messages", body=b"{}")
        assert [s["name"] for s in capture.spans()] == ["db"]
    finally:
        capture.close()
    clean_env.setenv("ANALYTICS_ROUTES", "GET /x=bogus")
    with pytest.raises(oa.ConfigurationError, match="ANALYTICS_ROUTES"):
        oa.configure(tracer_provider=TracerProvider())


async def test_one_middleware_follows_routes_reconfigured_while_it_runs(
    capture_analytics: CaptureAnalytics, clean_env: pytest.MonkeyPatch
) -> None:
    app = AnalyticsMiddleware(build(), server_span=False)
    await call(app, "POST", "/api/messages", body=b"{}")
    assert [s["attributes"]["analytics.interaction.type"] for s in capture_analytics.spans()] == ["chat"]
    capture_analytics.handle.shutdown()
    clean_env.setenv("ANALYTICS_ROUTES", "POST /api/messages=ignore; POST /api/other=db")
    capture = CaptureAnalytics()
    try:
        for path in ("/api/messages", "/api/other", "/api/messages"):  # the same paths, new answers
            await call(app, "POST", path, body=b"{}")
        assert [s["name"] for s in capture.spans()] == ["db"]
    finally:
        capture.close()


async def test_websocket_and_lifespan_pass_through(capture_analytics: CaptureAnalytics) -> None:
    from starlette.testclient import TestClient

    with TestClient(AnalyticsMiddleware(build())) as client, client.websocket_connect("/ws") as websocket:
        websocket.send_text("hello")
        assert websocket.receive_text() == "echo hello"
    assert capture_analytics.spans() == []


async def test_analytics_errors_are_swallowed_and_logged_once(
    capture_analytics: CaptureAnalytics, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from otel_analytics import answers as inspect

    def broken(self: Any, chunk: bytes) -> None:
        raise ValueError("inspector bug")

    monkeypatch.setattr(inspect.JsonInspector, "feed", broken)
    monkeypatch.setattr(_guard, "RAISE_UNDER_PYTEST", False)
    _guard._seen.clear()
    bare = await call(build(), "POST", "/api/messages", body=b"{}")
    app = AnalyticsMiddleware(build(), server_span=False)
    with caplog.at_level(logging.ERROR, logger="otel_analytics"):
        for _ in range(3):
            seen = await call(app, "POST", "/api/messages", body=b'{"conversationId": "c"}')
            assert seen.sent == bare.sent
    assert sum("internal error in asgi.response" in r.getMessage() for r in caplog.records) == 1
    assert len(chats(capture_analytics)) == 3  # still recorded, ended, without usage


async def test_a_failing_inspector_never_holds_more_than_a_group_of_chunks(
    capture_analytics: CaptureAnalytics, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_analytics import answers as inspect
    from otel_analytics.asgi import middleware

    handed: list[int] = []

    def broken(self: Any, chunks: list[bytes]) -> None:
        handed.append(len(chunks))
        raise ValueError("inspector bug")

    monkeypatch.setattr(inspect.SseInspector, "feed_many", broken)
    monkeypatch.setattr(_guard, "RAISE_UNDER_PYTEST", False)
    monkeypatch.setattr(middleware, "_CHUNKS_PER_READ", 8)  # the stream's 21 events: three groups
    bare, seen = await sse_bare_and_through(b'{"conversationId": "c"}')
    assert seen.sent == bare.sent
    assert handed == [8, 8, 5]  # each group dropped with the failure, not carried on
    assert len(chats(capture_analytics)) == 1


async def test_disabled_passes_everything_through(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ANALYTICS_ENABLED", "false")
    capture = CaptureAnalytics()
    try:
        app = build()
        seen = await call(AnalyticsMiddleware(app), "POST", "/api/messages", body=b'{"conversationId": "c"}')
        assert seen.status == 200
        assert capture.spans() == []
    finally:
        capture.close()


async def test_adds_a_server_span_to_an_uninstrumented_app(capture_analytics: CaptureAnalytics) -> None:
    traceparent = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    app = AnalyticsMiddleware(build())
    await call(
        app, "POST", "/api/messages", body=b'{"conversationId": "conv-srv"}', headers=[(b"traceparent", traceparent)]
    )
    servers = [s for s in capture_analytics.spans() if s["kind"] == "SERVER"]
    assert len(servers) == 1
    server, chat = servers[0], chats(capture_analytics)[0]
    assert server["trace_id"] == "0af7651916cd43dd8448eb211c80319c"  # propagation from the client
    assert server["parent_span_id"] == "b7ad6b7169203331"
    assert chat["trace_id"] == format(oa.session_trace_id("conv-srv"), "032x")
    assert chat["links"] == [server["span_id"]]
    assert server["links"] == [chat["span_id"]]
    # The request's trace is not one more trace of the session (backends group by session.id).
    assert server["attributes"]["analytics.session.id"] == "conv-srv"
    assert "session.id" not in server["attributes"] and "user.id" not in server["attributes"]
    assert len(capture_analytics.spans()) == 2  # no per-message send/receive spans


async def test_an_outer_server_span_is_joined_not_doubled(capture_analytics: CaptureAnalytics) -> None:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    app = OpenTelemetryMiddleware(
        AnalyticsMiddleware(build()), exclude_spans=["receive", "send"], tracer_provider=capture_analytics.provider
    )
    await call(app, "POST", "/api/messages", body=b'{"conversationId": "conv-outer"}')
    servers = [s for s in capture_analytics.spans() if s["kind"] == "SERVER"]
    assert len(servers) == 1
    assert chats(capture_analytics)[0]["links"] == [servers[0]["span_id"]]


async def test_an_app_instrumented_inside_is_linked_not_doubled(capture_analytics: CaptureAnalytics) -> None:
    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    api = FastAPI()

    @api.post("/api/messages")
    async def reply() -> dict[str, Any]:
        from tests.chat_apps import COMPLETION

        return COMPLETION

    FastAPIInstrumentor.instrument_app(
        api, tracer_provider=capture_analytics.provider, exclude_spans=["receive", "send"]
    )
    try:
        await call(AnalyticsMiddleware(api), "POST", "/api/messages", body=b'{"conversationId": "conv-in"}')
        servers = [s for s in capture_analytics.spans() if s["kind"] == "SERVER"]
        assert len(servers) == 1
        chat = chats(capture_analytics)[0]
        assert chat["links"] == [servers[0]["span_id"]]
        assert servers[0]["links"] == [chat["span_id"]]
        assert chat["attributes"]["gen_ai.usage.input_tokens"] == 1200
    finally:
        FastAPIInstrumentor.uninstrument_app(api)


async def test_instrument_app_adds_middleware_to_starlette_and_wraps_others(
    capture_analytics: CaptureAnalytics,
) -> None:
    starlette_app = build()
    assert oa.instrument_app(starlette_app, server_span=False) is starlette_app
    await call(starlette_app, "POST", "/api/messages", body=b'{"conversationId": "conv-i"}')
    assert len(chats(capture_analytics)) == 1

    async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    wrapped = oa.instrument_app(bare, server_span=False)
    assert isinstance(wrapped, AnalyticsMiddleware)
    assert (await call(wrapped, "POST", "/api/chat/completions", body=b"{}")).status == 204


async def test_manual_spans_inside_the_app_join_the_request_session(capture_analytics: CaptureAnalytics) -> None:
    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        await receive()
        with oa.interaction("db", write_ops=1):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    await call(
        AnalyticsMiddleware(app, server_span=False),
        "POST",
        "/api/messages",
        body=b'{"conversationId": "conv-m"}',
        headers=USER,
    )
    db = capture_analytics.spans(type="db")[0]["attributes"]
    assert (db["session.id"], db["user.id"]) == ("conv-m", "u1")
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_fallback_session_ids_leave_the_random_module_alone() -> None:
    # An app that seeds the random module (ML code does) must not get repeated session ids, and
    # the module's state is the app's.
    import random

    from otel_analytics.asgi.middleware import _fallback_session_id

    random.seed(42)
    state = random.getstate()
    first = _fallback_session_id()
    assert random.getstate() == state
    random.seed(42)
    assert _fallback_session_id().split("-")[2] != first.split("-")[2]


async def test_a_request_is_recorded_once_however_many_layers_see_it(capture_analytics: CaptureAnalytics) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    from tests.chat_apps import COMPLETION

    async def messages(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse(COMPLETION)

    twice = oa.instrument_app(oa.instrument_app(build(), server_span=False), server_span=False)
    nested = AnalyticsMiddleware(AnalyticsMiddleware(build()), server_span=True)
    # A sub-app instrumented on its own, mounted in an instrumented app: both see /api/messages.
    sub = oa.instrument_app(Starlette(routes=[Route("/messages", messages, methods=["POST"])]), server_span=False)
    parent = oa.instrument_app(Starlette(routes=[Mount("/api", app=sub)]), server_span=False)
    for n, app in enumerate((twice, nested, parent)):
        exchange = await call(app, "POST", "/api/messages", body=b'{"conversationId": "conv-once-%d"}' % n)
        assert exchange.status == 200
        recorded = [span for span in chats(capture_analytics) if span["attributes"]["session.id"] == f"conv-once-{n}"]
        assert len(recorded) == 1, (n, recorded)
        assert recorded[0]["attributes"]["gen_ai.usage.input_tokens"] == 1200
    servers = [span for span in capture_analytics.spans() if span["kind"] == "SERVER"]
    assert len(servers) == 1  # the nested pair's: the inner layer adds none of its own


async def test_a_layer_whose_rules_pass_a_request_leaves_it_to_one_inside(capture_analytics: CaptureAnalytics) -> None:
    inner = AnalyticsMiddleware(build(), server_span=False)
    outer = AnalyticsMiddleware(inner, rules=[RouteRule("POST", "/v1/chat/*", "chat")], server_span=False)
    await call(outer, "POST", "/api/messages", body=b'{"conversationId": "conv-inner"}')
    assert [span["attributes"]["session.id"] for span in chats(capture_analytics)] == ["conv-inner"]


async def test_an_app_served_under_a_prefix_is_matched_by_its_own_routes(capture_analytics: CaptureAnalytics) -> None:
    # uvicorn --root-path /chat behind a proxy: the path carries the prefix, the app routes without it.
    app = AnalyticsMiddleware(build(), server_span=False)
    exchange = await call(app, "POST", "/chat/api/messages", body=b'{"conversationId": "conv-root"}', root_path="/chat")
    assert exchange.status == 200
    (span,) = chats(capture_analytics)
    assert span["attributes"]["session.id"] == "conv-root"
    assert json.loads(span["attributes"]["analytics.metadata"])["endpoint"] == "/chat/api/messages"  # the URL
    # A rule written with the prefix still wins; a path outside the prefix is not stripped.
    prefixed = AnalyticsMiddleware(build(), rules=[RouteRule("POST", "/chat/api/*", "ignore")], server_span=False)
    await call(prefixed, "POST", "/chat/api/messages", body=b"{}", root_path="/chat")
    await call(app, "POST", "/chatty/api/messages", body=b"{}", root_path="/chat")
    assert len(chats(capture_analytics)) == 1


async def test_a_session_id_callable_comes_first_and_a_failing_one_is_passed_over(
    capture_analytics: CaptureAnalytics, caplog: pytest.LogCaptureFixture
) -> None:
    def from_cookie(scope: MutableMapping[str, Any]) -> str | None:
        cookies = dict(scope["headers"]).get(b"cookie", b"").decode()
        return cookies.removeprefix("conversation=") or None

    def broken(scope: MutableMapping[str, Any]) -> str | None:
        raise KeyError("conversation")

    body = b'{"conversationId": "conv-body"}'
    cookie = [(b"cookie", b"conversation=conv-cookie")]
    await call(
        AnalyticsMiddleware(build(), server_span=False, session_id=from_cookie),
        "POST",
        "/api/messages",
        body=body,
        headers=cookie,
    )
    await call(
        AnalyticsMiddleware(build(), server_span=False, session_id=from_cookie), "POST", "/api/messages", body=body
    )
    with caplog.at_level(logging.WARNING, logger="otel_analytics"):
        await call(
            AnalyticsMiddleware(build(), server_span=False, session_id=broken), "POST", "/api/messages", body=body
        )
    assert [span["attributes"]["session.id"] for span in chats(capture_analytics)] == [
        "conv-cookie",
        "conv-body",
        "conv-body",
    ]
    assert "the session_id callable raised" in caplog.text
