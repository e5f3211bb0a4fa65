"""Manual tracking: a few conversations recorded through the public API.

Run with ``make demo``. Exporters come from the environment (ANALYTICS_EXPORTERS, default
``console``), so the same program ships its spans to an OTLP backend with no code change::

    ANALYTICS_EXPORTERS=otlp OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \
        python examples/manual_tracking.py
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from typing import Any

import otel_analytics as oa

RANDOM = random.Random(7)  # the same demo output every run (never seed the global generator)


def fake_completion(model: str, prompt: str) -> dict[str, Any]:
    """What an OpenAI-compatible API answers (no network: this is a demo)."""
    prompt_tokens = 20 + len(prompt.split()) * 3
    completion_tokens = RANDOM.randint(40, 400)
    return {
        "id": f"chatcmpl-{RANDOM.randrange(10**8)}",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "..."}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


@oa.interaction("chat", model="gpt-4o-mini")
def answer(prompt: str) -> dict[str, Any]:
    # Usage, model and finish reason are read from the OpenAI-shaped return value.
    return fake_completion("gpt-4o-mini-2024-07-18", prompt)


@oa.interaction("chat", model="claude-3-5-haiku-20241022")
async def stream_answer(prompt: str) -> AsyncIterator[dict[str, Any]]:
    # An Anthropic-shaped stream: the span ends when the stream does, with its usage.
    yield {
        "type": "message_start",
        "message": {"id": "msg_1", "model": "claude-3-5-haiku-20241022", "usage": {"input_tokens": 35}},
    }
    for word in ("Paris", "is", "lovely", "in", "spring."):
        await asyncio.sleep(0.01)
        yield {"type": "content_block_delta", "delta": {"type": "text_delta", "text": word}}
    yield {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 120}}


@oa.interaction("db", name="messages.save", read_ops=1, write_ops=2)
async def save_messages(conversation: str) -> None:
    await asyncio.sleep(0.005)


async def conversation(session_id: str, user_id: str, turns: int) -> None:
    with oa.session(session_id, user_id=user_id, metadata={"client": "demo"}):
        for turn in range(turns):
            answer(f"question {turn} about travel plans")
            async for _chunk in stream_answer("and the weather?"):
                pass
            await save_messages(session_id)
        oa.track_api_call(call_count=2, metadata={"tool_name": "weather"}, compute_duration_ms=180)
        # The client API of the existing LibreChat integration works too:
        oa.track_interaction(
            type="chat",
            model_name="gpt-4o",
            prompt_tokens=1200,
            completion_tokens=300,
            compute_duration_ms=2400,
        )


async def main() -> None:
    handle = oa.configure(service_name="manual-tracking-demo")
    suffix = os.environ.get("DEMO_SESSION_SUFFIX", "")  # distinct sessions per run, when asked
    await asyncio.gather(
        conversation(f"conv-trip-paris{suffix}", "alice", turns=2),
        conversation(f"conv-budget{suffix}", "bob", turns=1),
    )
    handle.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
