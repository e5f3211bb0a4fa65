"""A chat backend shaped like LibreChat, with a fake LLM that answers in OpenAI format.

One line instruments it (``oa.instrument_app(app)``); exporters come from the environment::

    ANALYTICS_EXPORTERS=tracker ANALYTICS_TRACKER_URL=http://127.0.0.1:8787 python examples/chat_app.py --port 8000

Routes: ``POST /api/convos`` (new conversation), ``POST /api/messages`` (a reply, JSON or SSE when
``"stream": true``, with usage either way), ``DELETE /api/convos/{id}``. ``FAKE_LLM_CHUNK_DELAY_S``
slows the stream down between chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

import otel_analytics as oa

REPLY = "Paris in spring is lovely: mild weather, blooming gardens and long evenings along the Seine."
CONVERSATIONS: dict[str, list[dict[str, str]]] = {}


SYSTEM_PROMPT_TOKENS = 420  # what a real backend sends with every request


def _tokens(text: str) -> int:
    return max(1, round(len(text.split()) * 1.3))


def completion(model: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    prompt = SYSTEM_PROMPT_TOKENS + sum(_tokens(m.get("content", "")) for m in messages)
    answer = 12 * len(REPLY.split())  # as if the model wrote a longer answer
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "model": f"{model}-2024-08-06" if model == "gpt-4o" else model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": answer,
            "total_tokens": prompt + answer,
        },
    }


async def stream(model: str, messages: list[dict[str, str]]) -> AsyncIterator[bytes]:
    """OpenAI chunks, then a final chunk with usage (``stream_options.include_usage``), then [DONE]."""
    delay = float(os.environ.get("FAKE_LLM_CHUNK_DELAY_S", "0.01"))
    answer = completion(model, messages)
    base = {"id": answer["id"], "object": "chat.completion.chunk", "model": answer["model"]}
    words = REPLY.split(" ")
    for n, word in enumerate(words):
        delta = {"content": word if n == 0 else " " + word}
        finish = "stop" if n == len(words) - 1 else None
        chunk = base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        yield f"data: {json.dumps(chunk)}\n\n".encode()
        await asyncio.sleep(delay)
    yield f"data: {json.dumps(base | {'choices': [], 'usage': answer['usage']})}\n\n".encode()
    yield b"data: [DONE]\n\n"


def create_app() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        handle = oa.configure(service_name="chat-app")
        yield
        handle.shutdown()  # flush what is queued, within ANALYTICS_FLUSH_TIMEOUT_S

    app = FastAPI(lifespan=lifespan)

    @app.post("/api/convos")
    async def new_conversation() -> dict[str, str]:
        conversation_id = f"conv-{uuid.uuid4().hex[:8]}"
        CONVERSATIONS[conversation_id] = []
        return {"conversationId": conversation_id, "title": "New Chat"}

    @app.post("/api/messages")
    async def message(request: Request) -> Any:
        body = await request.json()
        history = CONVERSATIONS.setdefault(body["conversationId"], [])
        history.append({"role": "user", "content": body["text"]})
        # The middleware put the conversation in context: this lands in the same session.
        with oa.interaction("db", name="messages.save", read_ops=1, write_ops=1):
            await asyncio.sleep(0)
        model = body.get("model", "gpt-4o-mini")
        if body.get("stream"):
            return StreamingResponse(stream(model, history), media_type="text/event-stream")
        return JSONResponse(completion(model, history))

    @app.delete("/api/convos/{conversation_id}")
    async def delete_conversation(conversation_id: str) -> dict[str, bool]:
        CONVERSATIONS.pop(conversation_id, None)
        return {"ok": True}

    oa.instrument_app(app)
    return app


app = create_app()

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
