"""SIGTERM during heavy traffic: the app flushes what it can within the flush timeout and exits,
and a hung exporter never holds the process past it."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from examples.fake_llm import create_app as create_fake_provider
from tests.fake_tracker import FakeTracker
from tests.helpers import clean_environ
from tests.servers import ServerThread
from tests.test_outages import SilentServer

ROOT = Path(__file__).resolve().parent.parent


def start_app(port: int, tracker_url: str, flush_timeout: float, provider_url: str) -> subprocess.Popen[bytes]:
    env = clean_environ(
        OPENAI_BASE_URL=f"{provider_url}/v1",
        OPENAI_API_KEY="sk-test",
        ANALYTICS_EXPORTERS="tracker",
        ANALYTICS_TRACKER_URL=tracker_url,
        ANALYTICS_FLUSH_TIMEOUT_S=str(flush_timeout),
        ANALYTICS_TIMEOUT_S="30",
        ANALYTICS_RETRY_BUDGET_S="60",
        FAKE_LLM_CHUNK_DELAY_S="0",
    )
    app = subprocess.Popen([sys.executable, str(ROOT / "examples" / "chat_app.py"), "--port", str(port)], env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
            return app
        except httpx.TransportError:
            time.sleep(0.1)
    app.kill()
    raise AssertionError("the example app did not start")


def traffic(url: str, stop: threading.Event, answered: list[int]) -> None:
    with httpx.Client(base_url=url, timeout=5) as client:
        n = 0
        while not stop.is_set():
            try:
                body = {"conversationId": f"conv-{n % 8}", "model": "gpt-4o-mini", "text": "hi", "stream": n % 2 == 0}
                answered.append(client.post("/api/messages", json=body).status_code)
            except httpx.TransportError:
                return  # the server is going away
            n += 1


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("tracker_kind", ["healthy", "hung"])
def test_sigterm_under_load_flushes_within_the_timeout(tracker_kind: str) -> None:
    tracker = FakeTracker() if tracker_kind == "healthy" else SilentServer()
    provider = ServerThread(create_fake_provider())
    port = free_port()
    app = start_app(port, tracker.url, flush_timeout=2.0, provider_url=provider.url)
    stop, answered = threading.Event(), list[int]()
    clients = [threading.Thread(target=traffic, args=(f"http://127.0.0.1:{port}", stop, answered)) for _ in range(3)]
    try:
        for client in clients:
            client.start()
        time.sleep(1.5)
        started = time.monotonic()
        app.send_signal(signal.SIGTERM)
        code = app.wait(timeout=20)
        took = time.monotonic() - started
    finally:
        stop.set()
        for client in clients:
            client.join(10)
        if app.poll() is None:
            app.kill()
        tracker.close()
        provider.close()
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a clean shutdown
    assert answered and all(status == 200 for status in answered)
    # uvicorn's own graceful shutdown, then at most the 2 s flush timeout (plus process exit).
    assert took < 8, took
    if tracker_kind == "healthy":
        assert isinstance(tracker, FakeTracker)
        chats = [i for i in tracker.interactions if i["type"] == "chat"]
        assert len(chats) >= len(answered)  # every answered request's interaction was flushed at exit


def test_a_program_that_just_ends_delivers_its_sessions_and_interactions(fake_tracker: FakeTracker) -> None:
    """No shutdown call: the flush at exit sends everything, session starts included. It runs
    after concurrent.futures has stopped taking work, so the concurrent sends happen one by one;
    the tracker, like the deployed worker, refuses an interaction of a session never started."""
    from tests.helpers import run_python

    result = run_python(
        """
        import otel_analytics as oa
        oa.configure(exporters="tracker")
        for n in range(5):
            oa.track_interaction(session_id=f"conv-exit-{n}", user_id="u", model_name="gpt-4o", prompt_tokens=10)
        """,
        ANALYTICS_TRACKER_URL=fake_tracker.url,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(fake_tracker.sessions) == [f"conv-exit-{n}" for n in range(5)], result.stderr
    assert len(fake_tracker.interactions) == 5, result.stderr


def test_a_program_that_just_ends_with_the_tracker_hung_exits_within_the_flush_timeout() -> None:
    """The sends stuck on a hung tracker (a minute of retry budget) do not hold the exit: the
    flush at exit gives up after its timeout, and nothing else waits for them."""
    from tests.helpers import run_python

    hung = SilentServer()
    try:
        started = time.monotonic()
        result = run_python(
            """
            import time
            import otel_analytics as oa
            oa.configure(exporters="tracker")
            for n in range(5):
                oa.track_interaction(session_id=f"conv-hung-{n}", user_id="u", model_name="gpt-4o", prompt_tokens=1)
            time.sleep(1.0)  # the batch is out: its session starts hang in the exporter's threads
            """,
            timeout=120,
            ANALYTICS_TRACKER_URL=hung.url,
            ANALYTICS_FLUSH_TIMEOUT_S="2",
            ANALYTICS_TIMEOUT_S="30",
            ANALYTICS_RETRY_BUDGET_S="60",
            OTEL_BSP_SCHEDULE_DELAY="100",
        )
        took = time.monotonic() - started
    finally:
        hung.close()
    assert result.returncode == 0, result.stderr
    assert took < 10, took  # a second of work, the 2 s flush timeout, interpreter start and exit


def serve(server: str, port: int, **env: str) -> subprocess.Popen[bytes]:
    """``tests/apps/no_shutdown_code.py`` under a real ASGI server, in its own process."""
    target = "tests.apps.no_shutdown_code:app"
    command = {
        "uvicorn": [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port)],
        "hypercorn": [sys.executable, "-m", "hypercorn", target, "--bind", f"127.0.0.1:{port}"],
    }[server]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=clean_environ(PYTHONPATH=str(ROOT), ANALYTICS_EXPORTERS="tracker", **env),
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/other", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"{server} did not start: {process.communicate()[1].decode()[-2000:]}")


def a_conversation(port: int) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        client.post("/api/convos").raise_for_status()
        for shape in ("json", "sse", "json"):
            body = {"conversationId": "conv-from-response", "model": "gpt-4o"}
            client.post("/api/messages", params={"shape": shape}, json=body).raise_for_status()
        client.delete("/api/convos/conv-from-response").raise_for_status()


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
def test_sigterm_right_after_the_last_response_loses_nothing(server: str, fake_tracker: FakeTracker) -> None:
    """No shutdown code in the app, a schedule delay that would hold everything for a minute: the
    server's lifespan shutdown flushes it (uvicorn then dies by the signal, without atexit)."""
    port = free_port()
    app = serve(server, port, ANALYTICS_TRACKER_URL=fake_tracker.url, OTEL_BSP_SCHEDULE_DELAY="60000")
    try:
        a_conversation(port)
        app.send_signal(signal.SIGTERM)
        code = app.wait(timeout=20)
    finally:
        if app.poll() is None:
            app.kill()
    stderr = app.communicate()[1].decode()
    assert code in (0, -signal.SIGTERM), stderr
    assert [i["type"] for i in fake_tracker.interactions].count("chat") == 3, stderr
    assert fake_tracker.sessions["conv-from-response"].get("end_time"), stderr  # the session end too
    assert "could not be delivered" not in stderr


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
def test_sigterm_with_the_tracker_hung_exits_within_the_flush_timeout_and_says_what_was_lost(server: str) -> None:
    hung = SilentServer()
    port = free_port()
    app = serve(
        server,
        port,
        ANALYTICS_TRACKER_URL=hung.url,
        ANALYTICS_FLUSH_TIMEOUT_S="2",
        ANALYTICS_TIMEOUT_S="30",
        ANALYTICS_RETRY_BUDGET_S="60",
        OTEL_BSP_SCHEDULE_DELAY="60000",
    )
    try:
        a_conversation(port)
        started = time.monotonic()
        app.send_signal(signal.SIGTERM)
        code = app.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        if app.poll() is None:
            app.kill()
        hung.close()
    stderr = app.communicate()[1].decode()
    assert code in (0, -signal.SIGTERM), stderr
    assert took < 2 * 2 + 3, (took, stderr)  # the lifespan's flush, then at most the one at exit
    assert "could not be delivered to the tracker" in stderr, stderr


def test_a_process_without_lifespan_flushes_on_sigterm_and_still_dies_by_it(fake_tracker: FakeTracker) -> None:
    """``handle.flush_on_signals()``: the flush, then the handler that was there before."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time\n"
            "import otel_analytics as oa\n"
            "handle = oa.configure(exporters='tracker')\n"
            "chained = []\n"
            "signal.signal(signal.SIGUSR1, lambda n, f: chained.append(n))\n"
            "handle.flush_on_signals(signal.SIGTERM, signal.SIGUSR1)\n"
            "oa.track_interaction(session_id='conv-sig', user_id='u', model_name='gpt-4o', prompt_tokens=3)\n"
            "signal.raise_signal(signal.SIGUSR1)\n"
            "assert chained == [signal.SIGUSR1], chained\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n",
        ],
        env=clean_environ(ANALYTICS_TRACKER_URL=fake_tracker.url, OTEL_BSP_SCHEDULE_DELAY="60000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == b"ready\n", process.stderr
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    _, stderr = process.communicate()
    assert code == -signal.SIGTERM, stderr  # Python's default, chained after the flush
    assert [i["session_id"] for i in fake_tracker.interactions] == ["conv-sig"]


def test_a_program_that_ends_with_the_tracker_down_says_what_it_could_not_deliver() -> None:
    from tests.helpers import run_python

    closed = free_port()  # nothing listens there: every connection is refused
    result = run_python(
        """
        import otel_analytics as oa
        oa.configure(exporters="tracker")
        for n in range(5):
            oa.track_interaction(session_id=f"conv-down-{n}", user_id="u", model_name="gpt-4o", prompt_tokens=1)
        """,
        ANALYTICS_TRACKER_URL=f"http://127.0.0.1:{closed}",
        ANALYTICS_RETRY_BUDGET_S="0.5",
        ANALYTICS_FLUSH_TIMEOUT_S="5",
    )
    assert result.returncode == 0, result.stderr
    assert (
        f"5 interactions and 5 session starts/ends could not be delivered to the tracker at http://127.0.0.1:{closed}"
        in result.stderr
    ), result.stderr
    assert "ConnectError" in result.stderr
