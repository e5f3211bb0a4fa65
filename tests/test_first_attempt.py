"""The first honest attempt works: a FastAPI backend with its own routes and the official SDK, with
otel-analytics' one line only (no configure(), no route rules), or under ``opentelemetry-instrument``
with no line at all, under uvicorn: per-conversation sessions, user, model, tokens and cost land in
the local tracker and the report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from examples.fake_llm import COMPLETION_TOKENS, create_app, prompt_tokens
from tests.conftest import LocalTracker
from tests.helpers import clean_environ, free_port
from tests.servers import ServerThread

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = "Plan a weekend in Lyon"


@pytest.fixture(scope="module")
def provider_url() -> Iterator[str]:
    server = ServerThread(create_app())
    try:
        yield server.url
    finally:
        server.close()


def serve(command: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return process
        except httpx.TransportError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    raise AssertionError(process.communicate()[1].decode()[-3000:])


def conversations(port: int) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for user, conversation in (("ann", "conv-lyon"), ("bob", "conv-rome")):
            for stream in (False, True):
                body = {"conversation_id": conversation, "message": MESSAGE, "model": "gpt-4o", "stream": stream}
                answer = client.post("/chat", json=body, headers={"x-user-id": user})
                assert answer.status_code == 200, answer.text
        assert client.get("/health").status_code == 200


def check_the_tracker(tracker: LocalTracker, stderr: str) -> None:
    sessions = {s["id"]: s for s in tracker.client.get("/v1/sessions").json()["data"]}
    assert set(sessions) == {"conv-lyon", "conv-rome"}, stderr
    assert (sessions["conv-lyon"]["user_id"], sessions["conv-rome"]["user_id"]) == ("ann", "bob")
    for conversation in sessions:
        rows = tracker.client.get(f"/v1/sessions/{conversation}/interactions").json()["interactions"]
        assert [(r["type"], r["model_name"]) for r in rows] == [("chat", "gpt-4o-2024-08-06")] * 2, stderr
        prompt = prompt_tokens({"messages": [{"content": MESSAGE}]})
        assert all((r["prompt_tokens"], r["completion_tokens"]) == (prompt, COMPLETION_TOKENS) for r in rows)
        assert all(r["total_cost"]["micro_cents"] > 0 for r in rows)


def run(tracker: LocalTracker, provider_url: str, command: list[str], port: int, **env: str) -> str:
    environ = clean_environ(
        PYTHONPATH=str(ROOT),
        ANALYTICS_TRACKER_URL=tracker.url,
        OPENAI_BASE_URL=f"{provider_url}/v1",
        OPENAI_API_KEY="sk-test",
        OTEL_BSP_SCHEDULE_DELAY="60000",  # nothing leaves before the server stops: its stop flushes
        **env,
    )
    process = serve(command, port, environ)
    try:
        conversations(port)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    return process.communicate()[1].decode()


def test_the_one_line_is_enough(tmp_path: Path, provider_url: str) -> None:
    tracker = LocalTracker(str(tmp_path / "one-line.db"))
    port = free_port()
    try:
        command = [sys.executable, "-m", "uvicorn", "tests.apps.own_routes:app", "--port", str(port)]
        stderr = run(tracker, provider_url, command, port, INSTRUMENT="one-line")
        check_the_tracker(tracker, stderr)
        report = subprocess.run(
            [sys.executable, "-m", "otel_analytics.cli", "report", "--url", tracker.url, "--format", "json"],
            capture_output=True,
            text=True,
            env=clean_environ(),
            timeout=60,
        )
        assert report.returncode == 0, report.stderr
        sessions = json.loads(report.stdout)["sessions"]
        assert {s["id"]: s["user_id"] for s in sessions} == {"conv-lyon": "ann", "conv-rome": "bob"}
        assert all(s["tokens_in"] > 0 and s["cost"]["micro_cents"] > 0 for s in sessions)
    finally:
        tracker.close()
    assert "otel-analytics" not in stderr  # no warning: a correctly set-up app is quiet


def test_zero_code_under_opentelemetry_instrument(tmp_path: Path, provider_url: str) -> None:
    tracker = LocalTracker(str(tmp_path / "zero-code.db"))
    port = free_port()
    agent = Path(sys.executable).with_name("opentelemetry-instrument")
    try:
        command = [str(agent), sys.executable, "-m", "uvicorn", "tests.apps.own_routes:app", "--port", str(port)]
        stderr = run(
            tracker,
            provider_url,
            command,
            port,
            PATH=f"{agent.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            OTEL_TRACES_EXPORTER="analytics_tracker",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
            OTEL_SERVICE_NAME="own-routes",
        )
        check_the_tracker(tracker, stderr)
    finally:
        tracker.close()
