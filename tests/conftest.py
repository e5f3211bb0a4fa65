from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fake_tracker import FakeTracker
from tests.receivers import OtlpGrpcReceiver, OtlpHttpReceiver
from tests.servers import ServerThread


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def otlp_http_receiver() -> Iterator[OtlpHttpReceiver]:
    receiver = OtlpHttpReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture
def otlp_grpc_receiver() -> Iterator[OtlpGrpcReceiver]:
    receiver = OtlpGrpcReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ANALYTICS_* or OTEL_* variable from the outer environment leaks into a test."""
    import os

    from otel_analytics import runtime

    for name in list(os.environ):
        if name.startswith(("ANALYTICS_", "OTEL_")):
            monkeypatch.delenv(name)
    # Without configure(), settings are read from the environment once: read them again.
    monkeypatch.setattr(runtime, "_default", None)
    return monkeypatch


@pytest.fixture(autouse=True)
def _quiet_sdk_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)


@pytest.fixture
def fake_tracker() -> Iterator[FakeTracker]:
    tracker = FakeTracker()
    try:
        yield tracker
    finally:
        tracker.close()


@pytest.fixture
def local_tracker(tmp_path: Path) -> Iterator[LocalTracker]:
    tracker = LocalTracker(str(tmp_path / "analytics.db"))
    try:
        yield tracker
    finally:
        tracker.close()


class LocalTracker:
    """The package's own tracker over HTTP on 127.0.0.1, with a fresh database."""

    def __init__(self, db_path: str, **config: Any) -> None:
        from otel_analytics.tracker.app import TrackerConfig, create_app

        self.app = create_app(TrackerConfig(db_path=db_path, **config))
        self.store = self.app.state.tracker.store
        self.db_path = db_path
        self._server = ServerThread(self.app)
        self.url = self._server.url
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def close(self) -> None:
        self.client.close()
        self._server.close()
        self.store.close()

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        import sqlite3

        with contextlib.closing(sqlite3.connect(self.db_path)) as db, db:  # "with db" commits; closing() closes
            return db.execute(sql, params).fetchall()


@pytest.fixture(autouse=True)
def _no_configuration_left_behind() -> Iterator[None]:
    """A test that configures otel-analytics (itself, or through the middleware's configuration
    on first use) shuts it down: one left active would be the next test's."""
    from otel_analytics import configuration

    yield
    left = configuration._active
    if left is not None:
        left.shutdown(timeout=2)
        raise AssertionError("this test left otel-analytics configured (shut the handle down)")
