"""The main job, end to end on one machine: ``make demo``.

Starts the local tracker on a free loopback port with a fresh database, runs an example program
against it (the tracker exporter, chosen by environment only), prints the per-session report,
stops the tracker and exits 0 (non-zero if any step failed).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
PROGRAM = HERE / "manual_tracking.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the tracker exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).json().get("status") == "ok":
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    raise SystemExit("the tracker did not become healthy in time")


def main() -> int:
    cli = [sys.executable, "-m", "otel_analytics.cli"]
    with tempfile.TemporaryDirectory(prefix="otel-analytics-demo-") as workdir:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        database = os.path.join(workdir, "analytics.db")
        tracker = subprocess.Popen([*cli, "tracker", "serve", "--port", str(port), "--db", database])
        try:
            wait_healthy(url, tracker)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("ANALYTICS_", "OTEL_"))}
            env.update(ANALYTICS_EXPORTERS="tracker", ANALYTICS_TRACKER_URL=url, OTEL_SERVICE_NAME="demo")
            print(f"\n$ python {PROGRAM.relative_to(HERE.parent)}   (ANALYTICS_EXPORTERS=tracker)", flush=True)
            subprocess.run([sys.executable, str(PROGRAM)], env=env, check=True)
            print("\n$ otel-analytics report\n", flush=True)
            subprocess.run([*cli, "report", "--url", url], check=True)
            print("\n$ otel-analytics report --session conv-trip-paris\n", flush=True)
            subprocess.run([*cli, "report", "--url", url, "--session", "conv-trip-paris"], check=True)
        finally:
            tracker.terminate()
            tracker.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
