"""Target 6: the local tracker's ingest rate through the batch route into SQLite.

The tracker runs as ``otel-analytics tracker serve`` (uvicorn, one process) on 127.0.0.1 with a
fresh database. Four client threads post batches of 100 valid interactions (the contract's
maximum, encoded before the clock starts) over keep-alive connections for the duration; the rate
is interactions stored (counted in the database afterwards) per second of wall time.
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

import httpx

from bench import servers
from bench.common import QUICK, header, verdict

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
    ok = verdict("6. tracker ingest through the batch route", rate, 10_000, "interactions/s", lower_is_better=False)
    return 0 if QUICK or ok else 1


if __name__ == "__main__":
    sys.exit(main())
