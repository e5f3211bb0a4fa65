"""Target 9 counted in instructions: what recording the GenAI metrics adds to an interaction.

``bench_metrics`` times blocks of interactions in CPU; the 10 % it judges is about the size of
this shared VM's moves from one block to the next. Here each variant (metrics off; on, a meter
provider otel-analytics built; on, one it joined) runs once under valgrind's callgrind, which
counts the instructions executed whatever the neighbours do: the same set-up and workloads as
``bench_metrics`` (``track_interaction``, a decorated 20-chunk stream, a JSON chat request
through the middleware), each in blocks that end with the variant's collection, after a
warm-up. A call to ``binascii.crc_hqx`` (which nothing else here calls) marks the end of each
workload, and callgrind dumps its count there. The ratios of ``bench_metrics`` are judged on the
counts: the table of ``make bench`` shows them beside the CPU ratios. Skipped where valgrind is
not installed.
"""

from __future__ import annotations

import binascii
import gc
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_analytics as oa
from bench.bench_metrics import BLOCK, WORKLOADS, Setup, judge_variants
from bench.common import QUICK, NullExporter, header

VARIANTS = ("off", "built", "joined")
BLOCKS = 1 if QUICK else 3
WARM_UP_BLOCKS = 1 if QUICK else 3
_MARK = "*crc_hqx*"  # callgrind dumps its counts when this function is entered


def _mark() -> None:
    binascii.crc_hqx(b"", 0)


def child(variant: str) -> None:
    """Each workload's blocks with one variant, marking the end of the warm-up and of each
    workload. The batch processor never exports (see bench_instructions): the spans wait."""
    processor = BatchSpanProcessor(
        NullExporter(), max_queue_size=1 << 22, max_export_batch_size=1 << 22, schedule_delay_millis=1e9
    )
    setup = Setup(processor)
    with oa.session("bench-metrics", user_id="u1"):
        for _, work in WORKLOADS:
            for _ in range(WARM_UP_BLOCKS):
                setup.block(variant, work)
        # What start-up made is frozen out of the collector's sight (see bench_instructions).
        gc.collect()
        gc.freeze()
        _mark()
        for _, work in WORKLOADS:
            for _ in range(BLOCKS):
                setup.block(variant, work)
            _mark()
    setup.close()


def _count(valgrind: str, variant: str, workdir: str) -> list[int]:
    """Instructions of each workload's blocks with one variant (one callgrind run)."""
    out = os.path.join(workdir, f"{variant}.out")
    command = [
        valgrind,
        "--tool=callgrind",
        f"--dump-before={_MARK}",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "bench.bench_metrics_instructions",
        "--child",
        variant,
        *(["--quick"] if QUICK else []),
    ]
    run = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    if run.returncode != 0:
        raise RuntimeError(f"{variant} under callgrind failed: {run.stderr[-2000:]}")
    counts = []
    for index in range(2, 2 + len(WORKLOADS)):  # dump 1 is start-up and warm-up
        with open(f"{out}.{index}", encoding="utf-8") as dump:
            totals = [line for line in dump if line.startswith("totals:")]
        counts.append(int(totals[0].split()[1]))
    return counts


def main() -> int:
    header("GenAI metrics: instructions per interaction (callgrind), off and on", __doc__ or "")
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed: instruction counts skipped\n")
        return 0
    if hasattr(os, "sched_setaffinity"):  # counts need no quiet CPU: two variants at once, any CPU
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as workdir, ThreadPoolExecutor(max_workers=2) as pool:
        counted = dict(zip(VARIANTS, pool.map(lambda v: _count(valgrind, v, workdir), VARIANTS), strict=True))
    interactions = BLOCKS * BLOCK
    ok = True
    for index, (name, _) in enumerate(WORKLOADS):
        per = {variant: counts[index] / interactions for variant, counts in counted.items()}
        print(f"  {name}: " + ", ".join(f"{variant} {value:,.0f}" for variant, value in per.items()))
        ok &= judge_variants(name, per["off"], per["built"], per["joined"], unit="instructions", kind="instructions")
    return 0 if ok or QUICK else 1


if __name__ == "__main__":
    if "--child" in sys.argv:
        child(sys.argv[sys.argv.index("--child") + 1])
        sys.exit(0)
    sys.exit(main())
