"""Driving an ASGI app over the protocol itself: exact messages in, exact messages out."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Exchange:
    sent: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


def http_scope(
    method: str,
    path: str,
    *,
    query: bytes = b"",
    headers: Sequence[tuple[bytes, bytes]] = (),
    json_body: bool = True,
    root_path: str = "",
) -> dict[str, Any]:
    base = [(b"host", b"testserver")]
    if json_body:
        base.append((b"content-type", b"application/json"))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": root_path,
        "headers": [*base, *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }


async def call(
    app: Any,
    method: str,
    path: str,
    *,
    body: bytes | Sequence[bytes] = b"",
    query: bytes = b"",
    headers: Sequence[tuple[bytes, bytes]] = (),
    json_body: bool = True,
    root_path: str = "",
) -> Exchange:
    """One request, its body in one or several messages; returns every message the app sent."""
    chunks = [body] if isinstance(body, bytes) else list(body)
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    never = asyncio.Event()
    exchange = Exchange()

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await never.wait()  # a connected client that sends nothing more
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        exchange.sent.append(message)

    scope = http_scope(method, path, query=query, headers=headers, json_body=json_body, root_path=root_path)
    await app(scope, receive, send)
    return exchange


class ReceiveLog:
    """An ASGI app wrapper that logs every message the wrapped app receives."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.messages: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        async def logged() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            self.messages.append(message)
            return message

        await self.app(scope, logged, send)
