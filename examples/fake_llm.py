"""A fake LLM provider on loopback: OpenAI-compatible and Anthropic-shaped, JSON and streaming.

It answers the real ``openai`` and ``anthropic`` SDKs as the real providers would (the shapes of
their answers, usage included), with no network and no model: ``make demo`` and the tests start
it. Routes: ``POST /v1/chat/completions``, ``/v1/responses``, ``/v1/embeddings`` (OpenAI) and
``POST /v1/messages`` (Anthropic), each JSON or, with ``"stream": true``, SSE. Token counts are
a function of the request (its messages' words), so a caller can check them::

    python examples/fake_llm.py --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

REPLY = "Paris in spring is lovely — mild weather, blooming gardens, café terraces and long evenings by the Seine."
WORDS = REPLY.split(" ")


@dataclass
class Fault:
    """What the next request to ``path`` gets instead of an answer."""

    path: str
    status: int = 500
    body: bytes = b"<html>upstream error</html>"
    content_type: str = "text/html"
    headers: dict[str, str] = field(default_factory=dict)
    drop_after_chunks: int | None = None
    """Stream this many chunks of the real answer, then drop the connection."""


@dataclass
class Behaviour:
    """How the fake answers: a delay before the first chunk and between chunks, gzip, faults."""

    first_chunk_delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    encoding: str | None = None
    """``gzip`` or ``br``: answers compressed (streams chunk by chunk, flushed, as a server would)."""
    split_bytes: int | None = None
    """Send a stream in pieces of this many bytes: events, and UTF-8 characters, split across them."""
    faults: list[Fault] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def take_fault(self, path: str) -> Fault | None:
        for index, fault in enumerate(self.faults):
            if fault.path == path:
                return self.faults.pop(index)
        return None


SYSTEM_PROMPT_TOKENS = 420
"""What a real backend's system prompt and tools add to every request."""


def prompt_tokens(body: dict[str, Any]) -> int:
    """The system prompt, 10 tokens a message (or input) and one a word of its text: deterministic."""
    items = body.get("messages") or body.get("input") or []
    if isinstance(items, str):
        items = [{"content": items}]
    total = SYSTEM_PROMPT_TOKENS
    for item in items if isinstance(items, list) else []:
        content = item.get("content", "") if isinstance(item, dict) else item
        total += 10 + len(str(content).split())
    return total


COMPLETION_TOKENS = 12 * len(WORDS)  # as if the model wrote a longer answer


def _sse(events: list[dict[str, Any]], named: bool = False, done: bool = True) -> list[bytes]:
    out = []
    for event in events:
        head = f"event: {event['type']}\n" if named else ""
        out.append(f"{head}data: {json.dumps(event, separators=(',', ':'))}\n\n".encode())
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


def chat_completion(body: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
    model = str(body.get("model", "gpt-4o-mini"))
    usage = {
        "prompt_tokens": prompt_tokens(body),
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": prompt_tokens(body) + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    answer = {
        "id": "chatcmpl-fake1",
        "object": "chat.completion",
        "created": 1764400000,
        "model": f"{model}-2024-08-06" if model == "gpt-4o" else model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop", "logprobs": None}
        ],
        "usage": usage,
    }
    base = {
        "id": answer["id"],
        "object": "chat.completion.chunk",
        "created": answer["created"],
        "model": answer["model"],
    }
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    chunks = []
    for n, word in enumerate(WORDS):
        delta = {"role": "assistant", "content": word} if n == 0 else {"content": " " + word}
        finish = "stop" if n == len(WORDS) - 1 else None
        chunk = base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        chunks.append(chunk | ({"usage": None} if include_usage else {}))
    if include_usage:
        chunks.append(base | {"choices": [], "usage": usage})
    return answer, _sse(chunks)


def responses_answer(body: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
    model = str(body.get("model", "gpt-4o-mini"))
    usage = {
        "input_tokens": prompt_tokens(body),
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": COMPLETION_TOKENS,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt_tokens(body) + COMPLETION_TOKENS,
    }
    message = {
        "id": "msg_fake1",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": REPLY, "annotations": []}],
    }
    done = {
        "id": "resp_fake1",
        "object": "response",
        "created_at": 1764400000,
        "status": "completed",
        "model": model,
        "output": [message],
        "usage": usage,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    running = done | {"status": "in_progress", "output": [], "usage": None}
    events: list[dict[str, Any]] = [{"type": "response.created", "sequence_number": 0, "response": running}]
    for n, word in enumerate(WORDS):
        events.append(
            {
                "type": "response.output_text.delta",
                "sequence_number": n + 1,
                "item_id": "msg_fake1",
                "output_index": 0,
                "content_index": 0,
                "delta": word if n == 0 else " " + word,
            }
        )
    events.append({"type": "response.completed", "sequence_number": len(WORDS) + 1, "response": done})
    return done, _sse(events, named=True, done=False)


def embeddings_answer(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
        "model": str(body.get("model", "text-embedding-3-small")),
        "usage": {"prompt_tokens": prompt_tokens(body), "total_tokens": prompt_tokens(body)},
    }


def anthropic_message(body: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
    model = str(body.get("model", "claude-3-5-haiku-20241022"))
    usage = {
        "input_tokens": prompt_tokens(body),
        "output_tokens": COMPLETION_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    answer: dict[str, Any] = {
        "id": "msg_fake2",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": REPLY}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    start = answer | {"content": [], "stop_reason": None, "usage": usage | {"output_tokens": 1}}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    for n, word in enumerate(WORDS):
        text = word if n == 0 else " " + word
        events.append({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})
    events += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": COMPLETION_TOKENS},
        },
        {"type": "message_stop"},
    ]
    return answer, _sse(events, named=True, done=False)


def _encoded(state: Behaviour) -> dict[str, str]:
    return {"content-encoding": state.encoding} if state.encoding else {}


def _compressor(encoding: str) -> Callable[[bytes | None], bytes]:
    """A streaming compressor: ``compress(data)`` gives what can be sent now (flushed),
    ``compress(None)`` the end."""
    if encoding == "br":
        import brotli

        brotli_stream = brotli.Compressor()

        def compress_br(data: bytes | None) -> bytes:
            if data is None:
                return bytes(brotli_stream.finish())
            return bytes(brotli_stream.process(data) + brotli_stream.flush())

        return compress_br
    zlib_stream = zlib.compressobj(wbits=31)  # gzip

    def compress_gzip(data: bytes | None) -> bytes:
        if data is None:
            return zlib_stream.flush()
        return zlib_stream.compress(data) + zlib_stream.flush(zlib.Z_SYNC_FLUSH)

    return compress_gzip


def create_app(behaviour: Behaviour | None = None) -> Starlette:
    """The fake provider as an ASGI app; ``app.state.behaviour`` can be changed while it runs."""

    async def answer(request: Request) -> Response:
        state: Behaviour = request.app.state.behaviour
        path = request.url.path
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return JSONResponse({"error": {"message": "invalid JSON", "type": "invalid_request_error"}}, 400)
        state.requests.append({"path": path, "body": body, "headers": dict(request.headers)})
        fault = state.take_fault(path)
        if fault is not None and fault.drop_after_chunks is None:
            return Response(fault.body, fault.status, headers=fault.headers, media_type=fault.content_type)
        if path.endswith("/embeddings"):
            return _json(embeddings_answer(body), state)
        if path.endswith("/messages"):
            document, chunks = anthropic_message(body)
        elif path.endswith("/responses"):
            document, chunks = responses_answer(body)
        else:
            document, chunks = chat_completion(body)
        if not body.get("stream"):
            return _json(document, state)
        drop = fault.drop_after_chunks if fault is not None else None
        return StreamingResponse(_stream(chunks, drop, state), media_type="text/event-stream", headers=_encoded(state))

    def _json(document: dict[str, Any], state: Behaviour) -> Response:
        raw = json.dumps(document, ensure_ascii=False).encode()
        if state.encoding is None:
            return Response(raw, media_type="application/json")
        compress = _compressor(state.encoding)
        return Response(compress(raw) + compress(None), media_type="application/json", headers=_encoded(state))

    async def _stream(chunks: list[bytes], drop: int | None, state: Behaviour) -> AsyncIterator[bytes]:
        await asyncio.sleep(state.first_chunk_delay_s)
        if state.split_bytes:
            whole = b"".join(chunks)
            chunks = [whole[i : i + state.split_bytes] for i in range(0, len(whole), state.split_bytes)]
        compress = _compressor(state.encoding) if state.encoding else None
        for n, chunk in enumerate(chunks):
            if drop is not None and n >= drop:
                raise ConnectionResetError("the fake provider drops the connection")
            yield compress(chunk) if compress is not None else chunk
            if state.chunk_delay_s:
                await asyncio.sleep(state.chunk_delay_s)
        if compress is not None:
            yield compress(None)

    routes = [
        Route(path, answer, methods=["POST"])
        for path in ("/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/messages")
    ]
    app = Starlette(routes=routes)
    app.state.behaviour = behaviour or Behaviour()
    return app


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--chunk-delay", type=float, default=0.01, help="seconds between streamed chunks")
    parser.add_argument("--first-chunk-delay", type=float, default=0.0, help="seconds before a stream's first")
    args = parser.parse_args()
    app = create_app(Behaviour(chunk_delay_s=args.chunk_delay, first_chunk_delay_s=args.first_chunk_delay))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
