"""Batches that arrive together are committed together, and still answered one by one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from otel_analytics.tracker.app import TrackerConfig, create_app


def batch(session: str, first: int, count: int = 3) -> dict[str, Any]:
    return {
        "interactions": [
            {
                "session_id": session,
                "user_id": "u1",
                "type": "api",
                "timestamp": "2026-11-29T10:15:00.123Z",
                "api_call_count": 1,
                "metadata": {"span_id": f"{n:016x}"},
            }
            for n in range(first, first + count)
        ]
    }


async def post_together(app: Any, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tracker") as client:
        return await asyncio.gather(*(client.post("/v1/track/interaction/batch", json=body) for body in bodies))


@pytest.fixture
def app_and_calls(tmp_path: Path) -> Iterator[tuple[Any, list[int]]]:
    app = create_app(TrackerConfig(db_path=str(tmp_path / "group.db")))
    store = app.state.tracker.store
    calls: list[int] = []
    real = store.add_interactions

    def counted(items: Any) -> list[str]:
        calls.append(len(items))
        if any(body["session_id"] == "conv-bad" for body, _ in items):
            raise RuntimeError("disk full (simulated)")
        added: list[str] = real(items)
        return added

    store.add_interactions = counted
    yield app, calls  # driven without its lifespan, which would close the store: closed here
    store.close()


def stored(app: Any) -> dict[str, int]:
    rows = app.state.tracker.store._db.execute("SELECT session_id, COUNT(*) FROM interactions GROUP BY session_id")
    return dict(rows.fetchall())


def test_concurrent_batches_share_one_transaction(app_and_calls: tuple[Any, list[int]]) -> None:
    app, calls = app_and_calls
    responses = asyncio.run(post_together(app, [batch(f"conv-{n}", n * 10) for n in range(5)]))
    assert [r.status_code for r in responses] == [202] * 5
    assert [r.json()["count"] for r in responses] == [3] * 5
    assert calls == [15]  # one transaction for the five
    assert stored(app) == {f"conv-{n}": 3 for n in range(5)}


def test_a_failing_batch_fails_alone(app_and_calls: tuple[Any, list[int]]) -> None:
    app, calls = app_and_calls
    bodies = [batch("conv-a", 0), batch("conv-bad", 10), batch("conv-b", 20)]
    responses = asyncio.run(post_together(app, bodies))
    assert [r.status_code for r in responses] == [202, 500, 202]
    assert calls == [9, 3, 3, 3]  # the group, then each batch on its own
    assert stored(app) == {"conv-a": 3, "conv-b": 3}


def test_repeated_keys_across_grouped_batches_store_one_row(app_and_calls: tuple[Any, list[int]]) -> None:
    app, _ = app_and_calls
    responses = asyncio.run(post_together(app, [batch("conv-r", 0), batch("conv-r", 0)]))
    assert [r.status_code for r in responses] == [202, 202]
    assert stored(app) == {"conv-r": 3}
