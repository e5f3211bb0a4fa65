"""A chat backend as real ones are built: FastAPI, its own routes and answer format, and the LLM
behind the official ``openai`` and ``anthropic`` SDKs. One line of otel-analytics
(``oa.instrument_app(app)``) gives it per-conversation sessions, tokens and cost: the SDKs' calls
are captured at their HTTP client, the conversation comes from the request.

Routes (LibreChat-shaped, which the default route rules know):

- ``POST /api/convos``: a new conversation, ``{"conversationId"}``;
- ``POST /api/messages``: ``{"conversationId", "text", "model", "stream"}``; a ``gpt-*`` model goes
  to OpenAI, a ``claude-*`` one to Anthropic; the answer is this app's own JSON
  (``{"reply": ...}``) or its own SSE (``data: {"text": ...}``), with no usage in it;
- ``POST /api/ask``: a model run in this process (a local one, say) whose answer is relayed in
  OpenAI's format: the middleware reads its usage from the answer itself;
- ``DELETE /api/convos/{id}``: the conversation ends.

The providers are wherever ``OPENAI_BASE_URL`` and ``ANTHROPIC_BASE_URL`` say (the SDKs read them;
``make demo`` points them at ``examples/fake_llm.py`` on loopback), and exporters come from the
environment::

    ANALYTICS_EXPORTERS=tracker OPENAI_BASE_URL=http://127.0.0.1:9100/v1 \\
    ANTHROPIC_BASE_URL=http://127.0.0.1:9100 python examples/chat_app.py --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

import otel_analytics as oa

CONVERSATIONS: dict[str, list[Any]] = {}  # message dicts, as the SDKs take them


def create_app() -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for client in (openai_client, anthropic_client):  # the SDKs' connection pools
            if client.cache_info().currsize:
                await client().close()

    app = FastAPI(lifespan=lifespan)

    # Made on first use: their keys and base URLs come from the environment.
    @functools.cache
    def openai_client() -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI()

    @functools.cache
    def anthropic_client() -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic()

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
            return StreamingResponse(stream_reply(model, history), media_type="text/event-stream")
        return {"conversationId": body["conversationId"], "reply": await reply(model, history)}

    async def reply(model: str, history: list[Any]) -> str:
        if model.startswith("claude"):
            answer = await anthropic_client().messages.create(model=model, max_tokens=512, messages=history)
            return "".join(block.text for block in answer.content if block.type == "text")
        completion = await openai_client().chat.completions.create(model=model, messages=history)
        return completion.choices[0].message.content or ""

    async def stream_reply(model: str, history: list[Any]) -> AsyncIterator[bytes]:
        """This app's own event format: text pieces, then the end."""
        if model.startswith("claude"):
            async with anthropic_client().messages.stream(model=model, max_tokens=512, messages=history) as stream:
                async for text in stream.text_stream:
                    yield f"data: {json.dumps({'text': text})}\n\n".encode()
        else:
            chunks = await openai_client().chat.completions.create(
                model=model,
                messages=history,
                stream=True,
                stream_options={"include_usage": True},
            )
            async for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield f"data: {json.dumps({'text': chunk.choices[0].delta.content})}\n\n".encode()
        yield b'data: {"done": true}\n\n'

    @app.post("/api/ask")
    async def ask(request: Request) -> JSONResponse:
        """A model run in this process, its answer relayed as OpenAI's format (with usage)."""
        body = await request.json()
        prompt = 200 + 2 * len(str(body.get("text", "")).split())
        return JSONResponse(
            {
                "id": f"chatcmpl-local-{uuid.uuid4().hex[:8]}",
                "object": "chat.completion",
                "model": "gpt-4o-mini",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Yes."}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": 2, "total_tokens": prompt + 2},
            }
        )

    @app.delete("/api/convos/{conversation_id}")
    async def delete_conversation(conversation_id: str) -> dict[str, bool]:
        CONVERSATIONS.pop(conversation_id, None)
        return {"ok": True}

    oa.instrument_app(app)  # the one line: configured from the environment on first use
    return app


app = create_app()

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
