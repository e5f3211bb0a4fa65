"""A tracker killed in the middle of writes leaves a database that opens, passes integrity_check,
and holds every interaction that got a 2xx answer."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.test_shutdown import free_port


def interaction(key: str) -> dict[str, object]:
    return {
        "session_id": f"conv-{key[-1]}",
        "user_id": "u",
        "type": "chat",
        "timestamp": "2026-11-29T10:00:00Z",
        "model_name": "gpt-4o",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "metadata": {"span_id": key},
    }


def test_sigkill_during_writes_loses_nothing_acknowledged(tmp_path: Path) -> None:
    database = tmp_path / "analytics.db"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "otel_analytics.cli", "tracker", "serve", "--port", str(port), "--db", str(database)]
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/health", timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the tracker did not start"
            time.sleep(0.1)
    acknowledged: list[str] = []
    lock = threading.Lock()

    def writer(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=5) as client:
            for n in range(100_000):
                key = f"w{worker}-{n}"
                try:
                    if n % 2:
                        answer = client.post(
                            "/v1/track/interaction", json=interaction(key), headers={"Idempotency-Key": key}
                        )
                        keys = [key]
                    else:
                        batch = [interaction(f"{key}-{i}") for i in range(20)]
                        answer = client.post("/v1/track/interaction/batch", json={"interactions": batch})
                        keys = [f"{key}-{i}" for i in range(20)]
                except httpx.TransportError:
                    return  # the server died under us
                if answer.status_code == 202:
                    with lock:
                        acknowledged.extend(keys)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    server.send_signal(signal.SIGKILL)  # no shutdown, no flush, mid-write
    server.wait(timeout=10)
    for thread in threads:
        thread.join(10)
    assert len(acknowledged) > 100
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {row[0] for row in db.execute("SELECT idempotency_key FROM interactions")}
        totals = db.execute("SELECT SUM(total_interactions) FROM sessions").fetchone()[0]
        count = db.execute("SELECT COUNT(*) FROM interactions").fetchone()[0]
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged interactions lost, e.g. {sorted(missing)[:3]}"
    assert totals == count  # session totals were written in the same transactions as the rows
