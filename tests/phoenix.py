"""Arize Phoenix, a real OTLP backend, on 127.0.0.1 for the tests of how backends group sessions.

Phoenix groups traces into sessions by the ``session.id`` on their spans. It is a large program
with dependencies of its own, so ``make test`` installs it into a virtual environment beside the
project's (``PHOENIX`` names its executable) and the tests start it as a separate process.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EXECUTABLE = ROOT / ".venv-phoenix" / "bin" / "phoenix"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def executable() -> str:
    """Phoenix's command; a missing one is an error that says how to get it, never a skip."""
    path = os.environ.get("PHOENIX") or str(DEFAULT_EXECUTABLE)
    if not (shutil.which(path) or os.access(path, os.X_OK)):
        raise RuntimeError(
            f"Arize Phoenix is not installed at {path}: `make test` installs it (make phoenix), "
            "or set PHOENIX to its `phoenix` executable."
        )
    return path


class Phoenix:
    """``phoenix serve`` with a fresh working directory, on free loopback ports."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ANALYTICS_", "PHOENIX_"))}
        env.update(
            PHOENIX_WORKING_DIR=str(workdir),
            PHOENIX_HOST="127.0.0.1",
            PHOENIX_PORT=str(self.port),
            PHOENIX_GRPC_PORT=str(_free_port()),
            PHOENIX_TELEMETRY_ENABLED="false",
        )
        self._log = open(workdir / "phoenix.log", "wb")  # noqa: SIM115 (closed in close())
        self._process = subprocess.Popen([executable(), "serve"], env=env, stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"phoenix exited with {self._process.returncode}: see {workdir / 'phoenix.log'}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.close()
        raise RuntimeError("phoenix did not start within 120 s")

    @property
    def traces_endpoint(self) -> str:
        return f"{self.url}/v1/traces"

    def sessions(self, project: str, *, until: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        """The sessions Phoenix shows for a project, once ``until`` holds for them (it ingests
        asynchronously), or what it shows after 30 s."""
        query = (
            "{ projects { edges { node { name sessions(first: 100) { edges { node { sessionId numTraces "
            "tokenUsage { prompt completion total } } } } } } } }"
        )
        deadline = time.monotonic() + 30
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            answer = httpx.post(f"{self.url}/graphql", json={"query": query}, timeout=10).json()
            for edge in answer["data"]["projects"]["edges"]:
                if edge["node"]["name"] == project:
                    found = [session["node"] for session in edge["node"]["sessions"]["edges"]]
            if until(found):
                return found
            time.sleep(0.3)
        return found

    def close(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)
        self._log.close()
