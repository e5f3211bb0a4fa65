from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable

USAGE_COUNT_KEYS = (
    "prompt_tokens",
    "completion_tokens",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)
"""The token counts a usage object may carry, in the shapes read (OpenAI's two APIs, Anthropic)."""


def clean_environ(**extra: str) -> dict[str, str]:
    """The current environment without ANALYTICS_* / OTEL_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANALYTICS_", "OTEL_", "PYTEST_"))}
    env.update(extra)
    return env


def run_python(script: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter (a fresh global tracer provider) and capture its output."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=clean_environ(**env),
        timeout=timeout,
    )


def in_threads(work: Callable[[], None], count: int) -> None:
    """Run ``work`` in ``count`` threads at once and wait for all of them."""
    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released): no test relies on a fixed one."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def nothing_listening() -> str:
    """A loopback URL where every connection is refused."""
    return f"http://127.0.0.1:{free_port()}"
