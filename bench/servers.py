"""Starting the loopback processes the benchmarks talk to (a sink, the local tracker)."""

from __future__ import annotations

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


def start(args: list[str], ready_path: str, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT)
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
