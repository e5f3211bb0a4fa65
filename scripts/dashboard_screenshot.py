"""The README's dashboard screenshots, made from the real page: a tracker on a free loopback
port, 400 generated sessions sent through its HTTP API, Chromium (Debian's, through Playwright)
at a laptop's width. Writes docs/images/dashboard-overview.png and dashboard-session.png.

    .venv/bin/python scripts/dashboard_screenshot.py
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.dashboard_data import wire_bodies

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"


def main() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as workdir:
        tracker = subprocess.Popen(
            [
                *(sys.executable, "-m", "otel_analytics.cli", "tracker", "serve", "--port", str(port)),
                *(
                    "--db",
                    os.path.join(workdir, "a.db"),
                    "--trace-url",
                    "http://localhost:6006/tracing?trace={trace_id}",
                ),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                for _ in range(100):
                    try:
                        client.get("/health")
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)
                for start, interactions in wire_bodies(400, users=25):
                    client.post("/v1/track/session/start", json=start).raise_for_status()
                    client.post("/v1/track/interaction/batch", json={"interactions": interactions}).raise_for_status()
                session = client.get("/v1/sessions", params={"sort": "total_cost_desc", "limit": 1}).json()["data"][0]
            chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1280, "height": 900}, base_url=url)
                IMAGES.mkdir(parents=True, exist_ok=True)
                page.goto("/?days=30")
                page.wait_for_selector("canvas[data-drawn]")
                page.screenshot(path=str(IMAGES / "dashboard-overview.png"))
                page.goto(f"/sessions/{session['id']}")
                page.screenshot(path=str(IMAGES / "dashboard-session.png"))
                browser.close()
        finally:
            tracker.terminate()
            tracker.wait(timeout=10)
    print(f"written: {IMAGES}/dashboard-overview.png, dashboard-session.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
