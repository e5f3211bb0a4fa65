"""A FastAPI chat backend with routes of its own, as a new user's is: ``POST /chat`` with
``{"conversation_id", "message", "model", "stream"}``, the user in ``x-user-id``, the official
``openai`` SDK, and its own answer format. ``INSTRUMENT=one-line`` adds otel-analytics' one line
(``oa.instrument_app(app)``); unset, the app has no line of it (for ``opentelemetry-instrument``)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import openai
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse


@functools.cache
def client() -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(max_retries=0)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    if client.cache_info().currsize:
        await client().close()


app = FastAPI(lifespan=lifespan)


@app.post("/chat")
async def chat(request: Request) -> Any:
    body = await request.json()
    messages: Any = [{"role": "user", "content": body["message"]}]
    if body.get("stream"):
        stream = await client().chat.completions.create(
            model=body["model"], messages=messages, stream=True, stream_options={"include_usage": True}
        )

        async def events() -> AsyncIterator[bytes]:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield f"data: {json.dumps({'text': chunk.choices[0].delta.content})}\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream")
    reply = await client().chat.completions.create(model=body["model"], messages=messages)
    return {"reply": reply.choices[0].message.content}


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


if os.environ.get("INSTRUMENT") == "one-line":
    import otel_analytics as oa

    oa.instrument_app(app)
