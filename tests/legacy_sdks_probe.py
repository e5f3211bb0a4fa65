"""Run by ``tests/test_capture_legacy_sdks.py`` in the environment of the older SDK releases (on
httpx, not httpx2): their calls against the fake provider, captured; prints what was recorded."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import anthropic
import openai

import otel_analytics as oa
from examples.fake_llm import create_app
from otel_analytics.testing import CaptureAnalytics
from tests.servers import ServerThread

MESSAGES: Any = [{"role": "user", "content": "Plan a weekend in Paris"}]


async def async_calls(url: str) -> None:
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0) as client:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        async for _ in stream:
            pass
    async with anthropic.AsyncAnthropic(base_url=url, api_key="k", max_retries=0) as claude:
        async with claude.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=50, messages=MESSAGES) as s:
            await s.get_final_message()


def main() -> int:
    server = ServerThread(create_app())
    capture = CaptureAnalytics()
    libraries = []
    try:
        with oa.session("conv-legacy", user_id="u"):
            with openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0) as client:
                libraries.append(type(client._client).__mro__[-2].__module__.split(".")[0])
                client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
                for _ in client.chat.completions.create(
                    model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
                ):
                    pass
            with anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0) as claude:
                libraries.append(type(claude._client).__mro__[-2].__module__.split(".")[0])
                claude.messages.create(model="claude-3-5-haiku-20241022", max_tokens=50, messages=MESSAGES)
                with claude.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=50, messages=MESSAGES) as s:
                    s.get_final_message()
            asyncio.run(async_calls(server.url))
        spans = capture.spans(type="chat")
    finally:
        capture.close()
        server.close()
    versions = {"openai": openai.__version__, "anthropic": anthropic.__version__}
    json.dump({"versions": versions, "libraries": libraries, "spans": spans}, sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
