"""Starting the loopback processes the benchmarks talk to (a sink, the local tracker)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _away_from_us(pid: int) -> None:
    """A child inherits our CPU pinning (``make bench`` pins the measured process to CPU 1): put
    the servers on the other CPUs, so they never compete with what is measured."""
    mine = os.sched_getaffinity(0)
    others = set(range(os.cpu_count() or 1)) - mine
    if others:
        os.sched_setaffinity(pid, others)


def start(args: list[str], ready_path: str, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT)
    _away_from_us(process.pid)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{args} did not start")


def sink(delay_ms: float = 0.0) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    return start(["-m", "bench.sink", str(port), str(delay_ms)], "/count", port), f"http://127.0.0.1:{port}"


def tracker(db_path: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = ["-m", "otel_analytics.cli", "tracker", "serve", "--port", str(port), "--db", db_path]
    return start(args, "/health", port), f"http://127.0.0.1:{port}"


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=10)
