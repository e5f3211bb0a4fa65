"""Target 6: the local tracker's ingest rate through the batch route into SQLite, against the rate
of inserting the same rows into SQLite directly (the physical floor), in the same run.

The tracker runs as ``otel-analytics tracker serve`` (uvicorn, one process) on 127.0.0.1 with a
fresh database. Four client threads post batches of 100 valid interactions (the contract's
maximum, encoded before the clock starts) over keep-alive connections for the duration; the rate
is interactions stored (counted in the database afterwards) per second of wall time. The
yardstick: this process inserting the same interactions, as rows of the tracker's own schema and
pragmas (WAL, synchronous=NORMAL), 100 to a transaction, with ``executemany``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from typing import Any

import httpx

from bench import servers
from bench.common import QUICK, header, judge

SECONDS = 2.0 if QUICK else 10.0
THREADS = 4
BATCHES = 100 if QUICK else 1500  # 150,000 interactions: more than 10 s at the target rate


def batch(start: int) -> dict[str, object]:
    items = []
    for n in range(start, start + 100):
        items.append(
            {
                "session_id": f"conv-{n % 500}",
                "user_id": f"user-{n % 37}",
                "type": "chat",
                "timestamp": "2026-11-29T10:15:00.123Z",
                "model_name": "gpt-4o-mini",
                "prompt_tokens": 1200,
                "completion_tokens": 300,
                "compute_duration_ms": 850.5,
                "metadata": {"trace_id": f"{n:032x}", "span_id": f"{n:016x}", "endpoint": "/api/messages"},
            }
        )
    return {"interactions": items}


def raw_sqlite_rate(batches: int) -> float:
    """Rows per second inserting the bench's interactions straight into the tracker's schema."""
    from otel_analytics.tracker.store import Store

    rows = []
    for b in range(batches):
        items: list[dict[str, Any]] = batch(b * 100)["interactions"]  # type: ignore[assignment]
        rows.append(
            [
                (
                    f"int_{b}_{n}",
                    item["metadata"]["span_id"],
                    item["session_id"],
                    item["user_id"],
                    item["timestamp"],
                    "chat",
                    "completed",
                    item["model_name"],
                    item["prompt_tokens"],
                    item["completion_tokens"],
                    item["compute_duration_ms"],
                    json.dumps(item["metadata"]),
                )
                for n, item in enumerate(items)
            ]
        )
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "raw.db")
        Store(path).close()  # the schema, as migrated
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            started = time.perf_counter()
            for chunk in rows:
                db.execute("BEGIN")
                db.executemany(
                    "INSERT INTO interactions (id, idempotency_key, session_id, user_id, timestamp, type, status, "
                    "model_name, prompt_tokens, completion_tokens, duration_ms, metadata) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    chunk,
                )
                db.execute("COMMIT")
            return batches * 100 / (time.perf_counter() - started)


def main() -> int:
    header("local tracker: batch ingest into SQLite", __doc__ or "")
    with tempfile.TemporaryDirectory() as workdir:
        database = os.path.join(workdir, "analytics.db")
        tracker, url = servers.tracker(database)
        try:
            # Encoded before the clock starts: the client must not be what is measured.
            bodies = [json.dumps(batch(n * 100)).encode() for n in range(BATCHES)]
            queue = iter(bodies)
            lock = threading.Lock()
            errors: list[int] = []
            deadline = time.perf_counter() + SECONDS

            def client() -> None:
                headers = {"Content-Type": "application/json"}
                with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
                    while time.perf_counter() < deadline:
                        with lock:
                            body = next(queue, None)
                        if body is None:
                            return
                        answer = http.post("/v1/track/interaction/batch", content=body)
                        if answer.status_code != 202:
                            errors.append(answer.status_code)

            started = time.perf_counter()
            threads = [threading.Thread(target=client) for _ in range(THREADS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
        finally:
            servers.stop(tracker)
        with contextlib.closing(sqlite3.connect(database)) as db, db:
            stored = db.execute("SELECT COUNT(*) FROM interactions").fetchone()[0]
            sessions = db.execute("SELECT COUNT(*), SUM(total_interactions) FROM sessions").fetchone()
    rate = stored / elapsed
    print(
        f"{stored} interactions stored in {elapsed:.1f} s: {rate:,.0f}/s; errors: {len(errors)}; "
        f"{sessions[0]} sessions whose totals add up to {sessions[1]}\n"
    )
    floor = raw_sqlite_rate(BATCHES)
    ok = judge(
        "6",
        "tracker ingest through the batch route, vs inserting the rows into SQLite directly",
        rate,
        floor,
        0.5,
        unit="interactions/s",
        yardstick_name="raw SQLite",
        higher_is_better=True,
    )
    return 0 if QUICK or ok else 1


if __name__ == "__main__":
    sys.exit(main())
