"""Target 8: the dashboard's pages cost about what the read API costs, and stay flat as the
database grows.

Two generated databases (bench/dashboard_data.py: ~200 users over 30 days, 10 interactions per
session), of 10k and 100k sessions. On each, the tracker app runs in this process and every page
is asked for beside the read-API call that returns the same rows, in interleaved rounds; the time
is the server's (the ASGI app from the request to the last byte of its answer: routing, queries,
templates, headers; no network). Targets: each page's p50 at most 1.5x its API call's; each
page's p95 on 100k sessions at most 1.5x its p95 on 10k (indexed and rolled up, never scanned).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import QUICK, header, judge
from bench.dashboard_data import populate
from otel_analytics.tracker.app import TrackerConfig, create_app

SIZES = (500, 2_000) if QUICK else (10_000, 100_000)
ROUNDS = 5 if QUICK else 120


def pairs(now: datetime) -> dict[str, tuple[str, str]]:
    """Each page and the read-API call with the same rows."""
    start, end = (now - timedelta(days=29)).strftime("%Y-%m-%d"), now.strftime("%Y-%m-%d")
    return {
        "sessions, first page": ("/sessions", "/v1/sessions?limit=50"),
        "sessions of a user, by cost": (
            "/sessions?user=user-007&sort=cost",
            "/v1/sessions?user_id=user-007&sort=total_cost_desc&limit=50",
        ),
        "a session": ("/sessions/session-0000042", "/v1/sessions/session-0000042/interactions"),
        "overview, 30 days": ("/?days=30", f"/v1/stats/summary?start_date={start}&end_date={end}"),
    }


async def request(app: Any, target: str) -> float:
    """Seconds the app takes to answer ``GET target`` (its whole body)."""
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1"), (b"accept", b"text/html")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8787),
        "root_path": "",
    }
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    started = time.perf_counter()
    await app(scope, receive, send)
    elapsed = time.perf_counter() - started
    if status != [200]:
        raise RuntimeError(f"GET {target}: {status}")
    return elapsed


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def measure(size: int, workdir: str) -> dict[str, dict[str, list[float]]]:
    database = os.path.join(workdir, f"dashboard-{size}.db")
    built = time.perf_counter()
    now = datetime.now(UTC)
    app = create_app(TrackerConfig(db_path=database))
    store = app.state.tracker.store
    populate(store, size, now=now)
    print(f"  {size:,} sessions generated in {time.perf_counter() - built:.0f} s")
    times: dict[str, dict[str, list[float]]] = {}
    loop = asyncio.new_event_loop()
    try:
        targets = pairs(now)
        for page, api in targets.values():  # warm: the price snapshot, templates, caches
            loop.run_until_complete(request(app, page))
            loop.run_until_complete(request(app, api))
        for r in range(ROUNDS):
            for name, (page, api) in targets.items():
                order = (page, api) if r % 2 else (api, page)
                for target in order:
                    kind = "page" if target == page else "api"
                    elapsed = loop.run_until_complete(request(app, target))
                    times.setdefault(name, {}).setdefault(kind, []).append(elapsed)
    finally:
        loop.close()
        store.close()
    return times


def main() -> int:
    header("dashboard: page server time beside the read API, at two sizes", __doc__ or "")
    ok = True
    results: dict[int, dict[str, dict[str, list[float]]]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for size in SIZES:
            results[size] = measure(size, workdir)
    small, large = SIZES
    print(f"\n  {'':30} {'size':>8} {'page p50':>9} {'p95':>8} {'API p50':>9} {'p95':>8}  (ms)")
    for name in results[small]:
        for size in SIZES:
            t = results[size][name]
            figures = [percentile(t[kind], q) * 1e3 for kind in ("page", "api") for q in (0.5, 0.95)]
            print(f"  {name:30} {size:>8,} {figures[0]:9.2f} {figures[1]:8.2f} {figures[2]:9.2f} {figures[3]:8.2f}")
    print()
    for name in results[small]:
        for size in SIZES:
            t = results[size][name]
            page, api = percentile(t["page"], 0.5) * 1e3, percentile(t["api"], 0.5) * 1e3
            ok &= judge(
                "8a",
                f"{name}, {size:,} sessions: page p50 vs its read-API call's",
                page,
                api,
                1.5,
                unit="ms",
                yardstick_name="read API",
            )
        big, little = (percentile(results[n][name]["page"], 0.95) * 1e3 for n in (large, small))
        ok &= judge(
            "8b",
            f"{name}: page p95 at {large:,} sessions vs at {small:,}",
            big,
            little,
            1.5,
            unit="ms",
            yardstick_name=f"{small:,} sessions",
        )
    return 0 if ok or QUICK else 1


if __name__ == "__main__":
    sys.exit(main())
