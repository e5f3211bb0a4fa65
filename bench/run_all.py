"""``make bench``: every benchmark, one after the other, then one table of every verdict; exits
non-zero when a target is missed (``--quick``: a smoke run, no verdicts).

Each target is a ratio to a yardstick measured in the same run (the stock ASGI middleware, a plain
SDK span, the OTLP exporter, raw SQLite, a peer instrumentation...), never an absolute time: the
machines are shared and their speed moves from hour to hour. A CPU ratio that misses its limit by
less than 10 % while the same target counted in instructions (callgrind, unmoved by neighbours)
passes is reported as ``noise band``, not as a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

BENCHMARKS = [
    "bench_middleware",
    "bench_instructions",
    "bench_capture",
    "bench_capture_instructions",
    "bench_exporter",
    "bench_loss",
    "bench_ingest",
    "bench_memory",
    "bench_dashboard",
    "bench_metrics",
    "bench_metrics_instructions",
]
NOISE_BAND = 0.10
"""How far past its limit a CPU ratio may be, its instruction count passing, to be noise."""


def verdicts(records: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """Each CPU (or plain) record with its verdict: PASS, FAIL, or noise band."""
    counted = {(r["target"], r["label"].split(":")[0]): r for r in records if r["kind"] == "instructions"}
    out = []
    for record in records:
        if record["kind"] == "instructions":
            continue
        if record["ok"]:
            out.append((record, "PASS"))
            continue
        instructions = counted.get((record["target"], record["label"].split(":")[0]))
        ratio, limit = record["ratio"], record["limit"]
        near = ratio is not None and not record["higher_is_better"] and ratio <= limit * (1 + NOISE_BAND)
        out.append((record, "noise band" if near and instructions is not None and instructions["ok"] else "FAIL"))
    return out


def _figure(record: dict[str, Any]) -> str:
    unit = record["unit"]
    if record["yardstick"] is None:
        return f"{record['figure']:,.2f} {unit}"
    return f"{record['figure']:,.1f} / {record['yardstick']:,.1f} {unit}"


def table(records: Sequence[dict[str, Any]]) -> tuple[str, bool]:
    """The table of every verdict, and whether every target was met (noise band counts as met)."""
    counted = {(r["target"], r["label"].split(":")[0]): r for r in records if r["kind"] == "instructions"}
    lines = [
        "| target | what | figure / yardstick | ratio | limit | instructions | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    met = True
    for record, status in verdicts(records):
        sign = ">=" if record["higher_is_better"] else "<="
        ratio = f"{record['ratio']:.2f}x" if record["ratio"] is not None else "-"
        limit = f"{sign} {record['limit']:g}{'x' if record['ratio'] is not None else ' ' + record['unit']}"
        if record["yardstick_name"]:
            limit += f" ({record['yardstick_name']})"
        instructions = counted.get((record["target"], record["label"].split(":")[0]))
        counts = f"{instructions['ratio']:.2f}x" if instructions is not None and instructions["ratio"] else "-"
        if record["quick"]:
            status = "n/a (quick)"
        lines.append(
            f"| {record['target']} | {record['label']} | {_figure(record)} | {ratio} | {limit} | {counts} | {status} |"
        )
        met &= status != "FAIL"
    return "\n".join(lines), met


def main() -> int:
    quick = "--quick" in sys.argv
    failed = []
    with tempfile.TemporaryDirectory() as workdir:
        results = os.path.join(workdir, "results.jsonl")
        for name in BENCHMARKS:
            environ = {**os.environ, "BENCH_RESULTS": results, "BENCH_NAME": name}
            # The measured process on CPU 1 where taskset exists; the servers it starts go to the
            # other CPUs (bench/servers.py).
            command = [sys.executable, "-m", f"bench.{name}", *sys.argv[1:]]
            if subprocess.run(["which", "taskset"], capture_output=True).returncode == 0:
                command = ["taskset", "-c", "1", *command]
            if subprocess.run(command, env=environ).returncode != 0:
                failed.append(name)
        records = []
        if os.path.exists(results):
            with open(results, encoding="utf-8") as file:
                records = [json.loads(line) for line in file if line.strip()]
    text, met = table(records)
    print("\n== every target, judged in this run ==\n")
    print(text)
    # A benchmark that exited non-zero without a missed target to show for it broke.
    crashed = [name for name in failed if quick or not any(r["bench"] == name and not r["ok"] for r in records)]
    print(f"\nbenchmarks that did not run to the end: {', '.join(crashed) or 'none'}")
    return 0 if met and not crashed else 1


if __name__ == "__main__":
    sys.exit(main())
