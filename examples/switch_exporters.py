"""One program, four destinations, chosen by environment variables only (no code change).

Starts a local tracker, then runs ``manual_tracking.py`` four times:

1. ``console``: spans printed as JSON on stdout (development);
2. ``otlp``: OTLP/HTTP to a Collector; here the local tracker's OTLP ingest (``/v1/traces``) stands
   in for the Collector's tracker route, since no Collector runs on this machine;
3. ``tracker``: straight to the tracker's HTTP API;
4. ``tracker,otlp``: both at once, each on its own batch processor; the tracker stores each
   interaction once (idempotency keys), however many routes it arrived by.

Run it with ``.venv/bin/python examples/switch_exporters.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from demo import free_port, wait_ready  # type: ignore[import-not-found]  # run as a script, beside it

HERE = Path(__file__).resolve().parent


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="otel-analytics-exporters-") as workdir:
        url = f"http://127.0.0.1:{free_port()}"
        tracker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "otel_analytics.cli",
                "tracker",
                "serve",
                "--port",
                url.rsplit(":", 1)[1],
                "--db",
                os.path.join(workdir, "analytics.db"),
            ]
        )
        try:
            wait_ready(url, tracker, "/health")
            runs = {
                "console": {"ANALYTICS_EXPORTERS": "console"},
                "otlp": {"ANALYTICS_EXPORTERS": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{url}/v1/traces"},
                "tracker": {"ANALYTICS_EXPORTERS": "tracker", "ANALYTICS_TRACKER_URL": url},
                "tracker,otlp": {
                    "ANALYTICS_EXPORTERS": "tracker,otlp",
                    "ANALYTICS_TRACKER_URL": url,
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{url}/v1/traces",
                },
            }
            for name, variables in runs.items():
                env = {k: v for k, v in os.environ.items() if not k.startswith(("ANALYTICS_", "OTEL_"))}
                env.update(variables, DEMO_SESSION_SUFFIX=f"-{name.replace(',', '-')}")
                shown = " ".join(f"{k}={v}" for k, v in variables.items())
                result = subprocess.run(
                    [sys.executable, str(HERE / "manual_tracking.py")],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                printed = result.stdout.count('"name": ')
                sessions = httpx.get(f"{url}/v1/sessions", params={"limit": 100}).json()["data"]
                mine = [s for s in sessions if s["id"].endswith(env["DEMO_SESSION_SUFFIX"])]
                stored = sum(s["total_interactions"] for s in mine)
                print(
                    f"{name:13} {shown}\n{'':13} -> {printed} spans printed, {len(mine)} sessions and "
                    f"{stored} interactions in the tracker"
                )
        finally:
            tracker.terminate()
            tracker.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
