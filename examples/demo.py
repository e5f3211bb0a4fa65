"""The main job, end to end on one machine: ``make demo``.

Starts the local tracker on a free loopback port with a fresh database, a fake LLM provider
(``fake_llm.py``: OpenAI- and Anthropic-shaped, on loopback), and the example chat backend
(``chat_app.py``: FastAPI calling the provider through the real ``openai`` and ``anthropic`` SDKs,
instrumented with one line, exporting to the tracker by environment only). It sends the backend
real HTTP traffic (conversations with JSON and streamed replies, from both providers), stops it
with SIGTERM (the middleware flushes on the server's shutdown), prints the report (per session,
model and provider) and the dashboard's address, and stops the rest (``--keep-serving``, which
``make dashboard`` passes: the tracker and its dashboard stay up until Ctrl-C). Exits non-zero if
any step failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
# Each user's conversation: (text, model, streamed).
USERS = {
    "alice": [
        ("Plan a weekend in Paris", "gpt-4o", False),
        ("What about the weather?", "claude-3-5-haiku-20241022", True),
        ("And the museums?", "claude-3-5-haiku-20241022", False),
    ],
    "bob": [("Budget for a week in Rome?", "gpt-4o-mini", False), ("Where to eat?", "gpt-4o-mini", True)],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, process: subprocess.Popen[bytes], path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited with {process.returncode}")
        try:
            httpx.get(url + path, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not start in time")


def traffic(app_url: str) -> None:
    """Each user: a new conversation, its messages (JSON and streamed), a question answered by the
    app's local model in OpenAI's format, then the conversation deleted."""
    with httpx.Client(base_url=app_url, timeout=30) as client:
        for user, messages in USERS.items():
            headers = {"X-User-Id": user}
            conversation = client.post("/api/convos", headers=headers).raise_for_status().json()["conversationId"]
            for text, model, streamed in messages:
                body = {"conversationId": conversation, "model": model, "text": text, "stream": streamed}
                if streamed:
                    with client.stream("POST", "/api/messages", json=body, headers=headers) as response:
                        events = sum(1 for line in response.iter_lines() if line.startswith("data:"))
                    print(f"  {user} {conversation} {model}: {events} events (streamed)")
                else:
                    reply = client.post("/api/messages", json=body, headers=headers).raise_for_status().json()
                    print(f"  {user} {conversation} {model}: {len(reply['reply'])} characters (JSON)")
            ask = {"conversationId": conversation, "text": "Is it worth it?"}
            client.post("/api/ask", json=ask, headers=headers).raise_for_status()
            print(f"  {user} {conversation} local model: relayed in OpenAI's format")
            client.delete(f"/api/convos/{conversation}", headers=headers).raise_for_status()


def main() -> int:
    parser = argparse.ArgumentParser(description="otel-analytics end to end, on the local tracker")
    parser.add_argument("--keep-serving", action="store_true", help="keep the tracker and its dashboard up")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "otel_analytics.cli"]
    with tempfile.TemporaryDirectory(prefix="otel-analytics-demo-") as workdir:
        tracker_url = f"http://127.0.0.1:{free_port()}"
        port = tracker_url.rsplit(":", 1)[1]
        tracker = subprocess.Popen(
            [*cli, "tracker", "serve", "--port", port, "--db", os.path.join(workdir, "a.db")],
            stdout=subprocess.DEVNULL,  # its address is printed below, with the dashboard's
        )
        provider_port = free_port()
        provider = subprocess.Popen([sys.executable, str(HERE / "fake_llm.py"), "--port", str(provider_port)])
        app = None
        try:
            wait_ready(tracker_url, tracker, "/health")
            provider_url = f"http://127.0.0.1:{provider_port}"
            wait_ready(provider_url, provider, "/v1/models")
            env = {k: v for k, v in os.environ.items() if not k.startswith(("ANALYTICS_", "OTEL_"))}
            env.update(
                ANALYTICS_EXPORTERS="tracker",
                ANALYTICS_TRACKER_URL=tracker_url,
                OTEL_SERVICE_NAME="chat-app",
                OTEL_BSP_SCHEDULE_DELAY="200",
                OPENAI_BASE_URL=f"{provider_url}/v1",
                OPENAI_API_KEY="sk-demo-not-a-real-key",
                ANTHROPIC_BASE_URL=provider_url,
                ANTHROPIC_API_KEY="sk-ant-demo-not-a-real-key",
                ANTHROPIC_OPEN_TELEMETRY="false",
            )
            app_port = free_port()
            app_url = f"http://127.0.0.1:{app_port}"
            print(f"\n$ python examples/chat_app.py --port {app_port}   (ANALYTICS_EXPORTERS=tracker)", flush=True)
            app = subprocess.Popen([sys.executable, str(HERE / "chat_app.py"), "--port", str(app_port)], env=env)
            wait_ready(app_url, app, "/docs")
            traffic(app_url)
            app.terminate()  # SIGTERM: uvicorn shuts down gracefully, and the middleware flushes first
            if app.wait(timeout=30) not in (0, -15):  # uvicorn re-raises SIGTERM after a clean shutdown
                raise SystemExit(f"the chat app exited with {app.returncode}")
            print("\n$ otel-analytics report\n", flush=True)
            subprocess.run([*cli, "report", "--url", tracker_url], check=True)
            sessions = httpx.get(f"{tracker_url}/v1/sessions", params={"user_id": "alice"}).json()["data"]
            print(f"\n$ otel-analytics report --session {sessions[0]['id']}\n", flush=True)
            subprocess.run([*cli, "report", "--url", tracker_url, "--session", sessions[0]["id"]], check=True)
            if httpx.get(f"{tracker_url}/", headers={"accept": "text/html"}).status_code != 200:
                raise SystemExit("the dashboard did not answer")
            print(f"\nDashboard: {tracker_url}/", flush=True)
            if args.keep_serving:
                print("(serving until Ctrl-C)", flush=True)
                with contextlib.suppress(KeyboardInterrupt):
                    tracker.wait()
            else:
                print("(make dashboard keeps it serving)", flush=True)
        finally:
            for process in (app, provider, tracker):
                if process is not None and process.poll() is None:
                    process.terminate()
                    process.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
