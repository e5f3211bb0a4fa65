"""Generated tracker databases for the dashboard's tests and benchmarks: sessions of ~200 users
over the last 30 days, each with its interactions (chats of a few models, some streamed, some
failed, one model with no price; db and api work), written through the tracker's own validation
and store, as the HTTP API would write them."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from otel_analytics.tracker import validation
from otel_analytics.tracker.store import Store

MODELS = (
    ("gpt-4o-mini", "openai"),
    ("gpt-4o", "openai"),
    ("claude-3-5-haiku-latest", "anthropic"),
    ("claude-sonnet-4-5", "anthropic"),
    ("in-house-llm-v0", "self-hosted"),  # no price anywhere: the overview's unknown-model list
)


def wire_bodies(
    sessions: int,
    *,
    users: int = 200,
    days: int = 30,
    per_session: int = 10,
    seed: int = 7,
    now: datetime | None = None,
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each session's start body and its interactions' bodies, as a client sends them."""
    rng = random.Random(seed)
    end = now or datetime.now(UTC)
    span = timedelta(days=days).total_seconds()
    for number in range(sessions):
        started = end - timedelta(seconds=rng.random() * span)
        user = f"user-{rng.randrange(users):03d}"
        session_id = f"session-{number:07d}"
        start = {"session_id": session_id, "user_id": user, "start_time": started.isoformat()}
        interactions = []
        for step in range(per_session):
            at = started + timedelta(seconds=step * 20 + rng.random() * 10)
            kind = rng.choices(("chat", "db", "api"), weights=(6, 3, 1))[0]
            body: dict[str, Any] = {
                "session_id": session_id,
                "user_id": user,
                "type": kind,
                "timestamp": at.isoformat(),
            }
            if kind == "chat":
                model, provider = MODELS[min(int(rng.expovariate(1.2)), len(MODELS) - 1)]
                body.update(
                    model_name=model,
                    prompt_tokens=rng.randrange(50, 4000),
                    completion_tokens=rng.randrange(10, 1200),
                    compute_duration_ms=round(rng.lognormvariate(6.5, 0.8), 1),
                    status="failed" if rng.random() < 0.03 else "completed",
                    metadata={"provider": provider, "time_to_first_chunk_ms": round(rng.lognormvariate(5.5, 0.5), 1)},
                )
            elif kind == "db":
                body.update(db_read_ops=rng.randrange(0, 20), db_write_ops=rng.randrange(0, 5))
            else:
                body.update(api_call_count=rng.randrange(1, 4))
            interactions.append(body)
        yield start, interactions


def populate(store: Store, sessions: int, **options: Any) -> None:
    """Write ``sessions`` generated sessions (and their interactions) into ``store``."""
    batch: list[tuple[dict[str, Any], str | None]] = []
    for start, interactions in wire_bodies(sessions, **options):
        store.start_session(validation.session_start(start))
        batch += [(validation.interaction(body), None) for body in interactions]
        if len(batch) >= 1000:
            store.add_interactions(batch)
            batch = []
    if batch:
        store.add_interactions(batch)
