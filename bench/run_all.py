"""``make bench``: every benchmark, one after the other; ``--quick`` for a smoke run."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = [
    "bench_middleware",
    "bench_instructions",
    "bench_capture",
    "bench_exporter",
    "bench_loss",
    "bench_ingest",
    "bench_memory",
    "bench_dashboard",
    "bench_metrics",
]


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        # The measured process on CPU 1 where taskset exists; the servers it starts go to the
        # other CPUs (bench/servers.py).
        command = [sys.executable, "-m", f"bench.{name}", *sys.argv[1:]]
        if subprocess.run(["which", "taskset"], capture_output=True).returncode == 0:
            command = ["taskset", "-c", "1", *command]
        if subprocess.run(command).returncode != 0:
            failed.append(name)
    print(f"\nbenchmarks missing a target: {', '.join(failed) or 'none'}")
    return 1 if failed and "--quick" in sys.argv else 0


if __name__ == "__main__":
    sys.exit(main())
