"""What a batch of interactions adds to the dashboard's rolled-up tables (migration 0003): usage
per hour and model, per day and user, and latency buckets per day and model.

Kept as the interactions are written, in their transaction, so the dashboard's pages read a few
hundred rows however many sessions there are.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections import defaultdict
from typing import Any

LATENCY_BOUNDS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
"""The latency buckets' upper bounds (ms); one more bucket above the last."""


def bucket_of(ms: float) -> int:
    return bisect.bisect_left(LATENCY_BOUNDS_MS, ms)


def percentile(counts: dict[int, int], fraction: float) -> float | None:
    """The bound of the bucket the ``fraction`` (0.5, 0.95) percentile falls in (``None``: none;
    the open last bucket reads as its lower bound)."""
    total = sum(counts.values())
    if not total:
        return None
    rank, seen = fraction * total, 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return float(LATENCY_BOUNDS_MS[min(bucket, len(LATENCY_BOUNDS_MS) - 1)])
    return float(LATENCY_BOUNDS_MS[-1])


def _count(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


class Rollups:
    """The deltas of one batch."""

    __slots__ = ("_hourly", "_latency", "_users")

    def __init__(self) -> None:
        self._hourly: defaultdict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
        self._users: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        self._latency: defaultdict[tuple[str, str, str, int], int] = defaultdict(int)

    def add(self, body: dict[str, Any], cost_mc: int) -> None:
        stamp: str = body["timestamp"]
        metadata = body["metadata"]
        model = body["model_name"] or ""
        provider = metadata.get("provider")
        prompt, completion = _count(body["prompt_tokens"]), _count(body["completion_tokens"])
        row = self._hourly[(stamp[:13], model, provider if isinstance(provider, str) else "", body["type"])]
        row[0] += 1
        row[1] += body["status"] != "completed"
        row[2] += metadata.get("pricing") == "unknown_model"
        row[3] += prompt
        row[4] += completion
        row[5] += cost_mc
        user = self._users[(stamp[:10], body["user_id"])]
        user[0] += 1
        user[1] += prompt
        user[2] += completion
        user[3] += cost_mc
        if body["type"] == "chat" and model:
            duration = body["duration_ms"]
            if duration is not None:
                self._latency[(stamp[:10], model, "duration", bucket_of(duration))] += 1
            ttfc = metadata.get("time_to_first_chunk_ms")
            if isinstance(ttfc, int | float) and not isinstance(ttfc, bool) and 0 <= ttfc <= 1e12:
                self._latency[(stamp[:10], model, "ttfc", bucket_of(ttfc))] += 1

    def write(self, db: sqlite3.Connection) -> None:
        """Add the deltas to the tables (inside the batch's transaction)."""
        db.executemany(
            "INSERT INTO usage_hourly (hour, model, provider, type, interactions, failures, unpriced, "
            "prompt_tokens, completion_tokens, cost_mc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (hour, model, provider, type) DO UPDATE SET "
            "interactions = interactions + excluded.interactions, failures = failures + excluded.failures, "
            "unpriced = unpriced + excluded.unpriced, prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
            "completion_tokens = completion_tokens + excluded.completion_tokens, cost_mc = cost_mc + excluded.cost_mc",
            [(*key, *values) for key, values in self._hourly.items()],
        )
        db.executemany(
            "INSERT INTO usage_user_daily (day, user_id, interactions, prompt_tokens, completion_tokens, cost_mc) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, day) DO UPDATE SET "
            "interactions = interactions + excluded.interactions, "
            "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
            "completion_tokens = completion_tokens + excluded.completion_tokens, cost_mc = cost_mc + excluded.cost_mc",
            [(*key, *values) for key, values in self._users.items()],
        )
        if self._latency:
            db.executemany(
                "INSERT INTO latency_daily (day, model, measure, bucket, count) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (day, model, measure, bucket) DO UPDATE SET count = count + excluded.count",
                [(*key, count) for key, count in self._latency.items()],
            )
