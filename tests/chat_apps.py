"""ASGI chat backends for the middleware tests: one Starlette app serving every shape of answer."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

COMPLETION = {
    "id": "chatcmpl-42",
    "object": "chat.completion",
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Bonjour! " * 40}, "finish_reason": "stop"}],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 80,
        "total_tokens": 1280,
        "prompt_tokens_details": {"cached_tokens": 200},
    },
}


def sse_chunks(n: int = 20, usage: bool = True) -> list[bytes]:
    base: dict[str, Any] = {"id": "chatcmpl-s1", "object": "chat.completion.chunk", "model": "gpt-4o-mini-2024-07-18"}
    chunks = []
    for i in range(n - 1 if usage else n):
        finish = "stop" if i == (n - 2 if usage else n - 1) else None
        chunks.append(base | {"choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": finish}]})
    if usage:
        chunks.append(
            base | {"choices": [], "usage": {"prompt_tokens": 300, "completion_tokens": 19, "total_tokens": 319}}
        )
    return [f"data: {json.dumps(c)}\n\n".encode() for c in chunks] + [b"data: [DONE]\n\n"]


ANTHROPIC_EVENTS = [
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
    b'"model":"claude-3-5-haiku-20241022","usage":{"input_tokens":25,"cache_read_input_tokens":100,'
    b'"output_tokens":1}}}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":"Hi"}}\n\n',
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
    b'"usage":{"output_tokens":15}}\n\n',
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
]


class Recorder:
    """What the app saw and when it produced what (for the timing and pass-through checks)."""

    def __init__(self) -> None:
        self.request_bodies: list[bytes] = []
        self.produced_at: list[float] = []
        self.stream_closed: list[str] = []


def build(recorder: Recorder | None = None, delay: float = 0.0) -> Starlette:
    seen = recorder or Recorder()

    async def messages(request: Request) -> Response:
        raw = await request.body()
        seen.request_bodies.append(raw)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        shape = request.query_params.get("shape", "json")
        if shape == "json":
            return JSONResponse(COMPLETION)
        if shape == "raise":
            raise RuntimeError("the model server is on fire")
        if shape == "text":
            return Response("plain text, not JSON", media_type="text/plain")
        if shape == "garbage":
            return Response(b"\xff\xfe{not json\x00\x9f", media_type="application/json")
        if shape == "wrong-types":
            return JSONResponse({"model": 42, "usage": {"prompt_tokens": "many", "completion_tokens": -3}})
        if shape == "huge":
            return JSONResponse(
                {"model": "gpt-4o", "padding": "x" * (3 << 20), "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
            )
        if shape == "error":
            return JSONResponse({"error": {"message": "rate limited"}}, status_code=429)
        if shape in ("sse", "sse-nousage", "anthropic"):
            chunks = {"sse": sse_chunks(), "sse-nousage": sse_chunks(usage=False), "anthropic": ANTHROPIC_EVENTS}[shape]

            async def generate() -> AsyncIterator[bytes]:
                try:
                    for chunk in chunks:
                        seen.produced_at.append(time.monotonic())
                        yield chunk
                        if delay:
                            await asyncio.sleep(delay)
                finally:
                    seen.stream_closed.append(shape)

            return StreamingResponse(generate(), media_type="text/event-stream")
        if shape == "echo-model":
            return JSONResponse({"echo": body.get("model")})
        return JSONResponse({"unknown": shape}, status_code=400)

    async def new_conversation(request: Request) -> Response:
        return JSONResponse({"conversationId": "conv-from-response", "title": "New Chat"})

    async def delete_conversation(request: Request) -> Response:
        return JSONResponse({"deleted": request.path_params["conversation_id"]})

    async def other(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def echo_socket(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(f"echo {text}")
        await websocket.close()

    app = Starlette(
        routes=[
            Route("/api/messages", messages, methods=["POST"]),
            Route("/api/messages/{conversation_id}", messages, methods=["POST"]),
            Route("/api/convos", new_conversation, methods=["POST"]),
            Route("/api/convos/{conversation_id}", delete_conversation, methods=["DELETE"]),
            Route("/api/other", other, methods=["GET", "POST"]),
            WebSocketRoute("/ws", echo_socket),
        ]
    )
    app.state.recorder = seen
    return app


def gzipped(app: Starlette) -> Any:
    return GZipMiddleware(app, minimum_size=10)


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data)
