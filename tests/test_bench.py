"""The benchmarks keep working: each runs in its quick (smoke) mode. No timing is asserted here;
the targets are checked by ``make bench``, side by side in one run, never by a timed test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import clean_environ

ROOT = Path(__file__).resolve().parent.parent


def test_every_benchmark_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--quick"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=clean_environ(),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for target in ("1a.", "1b.", "2a.", "2b.", "2c.", "3. ", "4.", "5a.", "5b.", "6.", "7.", "8a.", "8b.", "9."):
        assert f") {target}" in result.stdout or f"  {target}" in result.stdout, target
    # Instruction counts need valgrind; without it the benchmark says so and is skipped.
    assert "1a (instructions)." in result.stdout or "valgrind is not installed" in result.stdout
    assert "benchmarks missing a target" in result.stdout
