from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.receivers import OtlpGrpcReceiver, OtlpHttpReceiver


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
