"""Property-based: whatever an app answers and a client sends, the middleware delivers the bytes
unchanged, never raises into the app, and only ever records valid token counts."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_analytics.asgi import AnalyticsMiddleware
from otel_analytics.testing import CaptureAnalytics
from tests.asgi_client import call

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

counts = st.one_of(
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
)
usage = st.fixed_dictionaries(
    {},
    optional={
        "prompt_tokens": counts,
        "completion_tokens": counts,
        "input_tokens": counts,
        "output_tokens": counts,
        "cache_read_input_tokens": counts,
        "prompt_tokens_details": st.dictionaries(st.just("cached_tokens"), counts),
    },
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(st.text(max_size=40), st.integers(), st.none()),
        "id": st.one_of(st.text(max_size=20), st.integers()),
        "type": st.sampled_from(["message", "message_start", "message_delta", "chunk"]),
        "usage": st.one_of(usage, st.text(max_size=5), st.integers()),
        "choices": st.one_of(
            st.lists(st.fixed_dictionaries({}, optional={"finish_reason": counts}), max_size=3), st.text(max_size=3)
        ),
    },
)


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, allow_nan=True).encode()  # NaN and Infinity included, as some servers do


garbage = st.one_of(
    st.binary(max_size=300),
    st.just(b"[" * 5000 + b"]" * 5000),  # deeply nested
    st.just(b"\xff\xfe\xfd" * 50),  # not UTF-8
    st.builds(lambda n: b'data: {"usage": ' + b"9" * n + b"}\n\n", st.integers(1, 5000)),
)


@st.composite
def sse_bodies(draw: Any) -> list[bytes]:
    events = draw(
        st.lists(
            st.one_of(
                documents.map(lambda d: b"data: " + encode(d) + b"\n\n"),
                garbage,
                st.just(b"data: [DONE]\n\n"),
                st.just(b": keep-alive\n\n"),
            ),
            max_size=12,
        )
    )
    stream = b"".join(events)
    if draw(st.booleans()):
        stream += b"x" * draw(st.integers(0, 70_000))  # an enormous last line, or a truncated stream
    cuts = sorted(set(draw(st.lists(st.integers(0, len(stream)), max_size=10))))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


@st.composite
def responses(draw: Any) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    kind = draw(st.sampled_from(["json", "sse", "gzip-json", "gzip-garbage", "text"]))
    if kind == "sse":
        return [(b"content-type", b"text/event-stream")], draw(sse_bodies())
    body = encode(draw(documents)) if draw(st.booleans()) else draw(garbage)
    if kind == "gzip-json":
        return [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")], [gzip.compress(body)]
    if kind == "gzip-garbage":
        return [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")], [body]
    media = b"application/json" if kind == "json" else b"text/plain"
    split = draw(st.integers(0, len(body)))
    return [(b"content-type", media)], [body[:split], body[split:]]


def scripted(headers: list[tuple[bytes, bytes]], chunks: list[bytes], seen: list[bytes]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            seen.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


def valid_counts(capture: CaptureAnalytics) -> None:
    for span in capture.spans(type="chat"):
        for key, value in span["attributes"].items():
            if key.startswith("gen_ai.usage.") or key == "analytics.cost.micro_cents":
                assert type(value) is int and value >= 0, (key, value)


@SETTINGS
@given(
    response=responses(),
    request=st.lists(st.one_of(st.binary(max_size=200), documents.map(encode)), min_size=1, max_size=4),
)
def test_any_response_and_request_pass_through_unchanged(
    capture_analytics: CaptureAnalytics,
    response: tuple[list[tuple[bytes, bytes]], list[bytes]],
    request: list[bytes],
) -> None:
    capture_analytics.clear()
    headers, chunks = response
    bare_seen: list[bytes] = []
    wrapped_seen: list[bytes] = []
    bare = asyncio.run(call(scripted(headers, chunks, bare_seen), "POST", "/api/messages", body=request))
    app = AnalyticsMiddleware(scripted(headers, chunks, wrapped_seen), server_span=False)
    seen = asyncio.run(call(app, "POST", "/api/messages", body=request))  # raises if analytics raised
    assert seen.sent == bare.sent
    assert wrapped_seen == bare_seen == request
    assert len(capture_analytics.spans(type="chat")) == 1
    valid_counts(capture_analytics)
