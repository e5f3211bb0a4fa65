"""The capture with older releases of the SDKs, which send through httpx (not httpx2): openai 2.x
and anthropic 0.x, in an environment of their own (``make test`` builds it)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from examples.fake_llm import COMPLETION_TOKENS, prompt_tokens
from tests.helpers import clean_environ

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PYTHON = ROOT / ".venv-legacy-sdks" / "bin" / "python"


def test_older_sdks_on_httpx_are_captured_too() -> None:
    python = os.environ.get("LEGACY_SDKS_PYTHON") or str(DEFAULT_PYTHON)
    assert os.access(python, os.X_OK), (
        f"the older SDKs' environment is not at {python}: `make test` builds it (make legacy-sdks), "
        "or set LEGACY_SDKS_PYTHON"
    )
    result = subprocess.run(
        [python, str(ROOT / "tests" / "legacy_sdks_probe.py")],
        cwd=ROOT,
        env=clean_environ(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["versions"]["openai"].startswith("2.") and report["versions"]["anthropic"].startswith("0.")
    assert report["libraries"] == ["httpx", "httpx"]  # the clients these releases send with
    spans = report["spans"]
    assert len(spans) == 7
    prompt = prompt_tokens({"messages": [{"role": "user", "content": "Plan a weekend in Paris"}]})
    for span in spans:
        a = span["attributes"]
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (prompt, COMPLETION_TOKENS)
        assert a["session.id"] == "conv-legacy" and a["analytics.outcome"] == "completed"
