from __future__ import annotations

import pytest

from otel_analytics.cli import main
from tests.helpers import nothing_listening


def test_ids_prints_the_documented_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ids", "conv-1"]) == 0
    out = capsys.readouterr().out
    assert "13b3ce507342d66227f23126117dec32" in out
    assert "f629897a679b472f" in out


def test_price(capsys: pytest.CaptureFixture[str], clean_env: pytest.MonkeyPatch) -> None:
    assert main(["price", "gpt-4o", "--input-tokens", "1000000", "--output-tokens", "0"]) == 0
    assert "250000 mc ($2.5000)" in capsys.readouterr().out
    assert main(["price", "no-such-model-xyz"]) == 1


def test_health_exit_code(capsys: pytest.CaptureFixture[str], clean_env: pytest.MonkeyPatch) -> None:
    assert main(["health", "--url", nothing_listening(), "--timeout", "0.5"]) == 1
    assert "unhealthy" in capsys.readouterr().out
