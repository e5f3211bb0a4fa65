"""Targets 1 and 2 counted in instructions: what the middleware adds, unmoved by the neighbours.

CPU time on a shared VM moves by a third from one run to the next (bench_middleware). Here each
variant runs once under valgrind's callgrind, which counts the instructions executed: the same
code path gives the same count whatever else the host is doing. One process per variant (the bare
app, the stock middleware with send/receive spans off, the analytics layer inside it, the
middleware alone adding its own server span) serves, after a warm-up, N JSON chat requests, then
N/4 responses of 20 SSE chunks and N/4 of 220, through bench_middleware's in-process ASGI loop;
one more makes plain SDK spans carrying the interaction span's attributes (the second yardstick).
A call to ``binascii.crc_hqx`` (which nothing else here calls) marks the end of each phase, and
callgrind dumps its count there. The same ratios as bench_middleware's are judged on the counts:
the table of ``make bench`` reads a CPU ratio near its limit as noise when these pass.
Skipped where valgrind is not installed.
"""

from __future__ import annotations

import asyncio
import binascii
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry.sdk.trace.export import BatchSpanProcessor

from bench.bench_middleware import (
    REQUEST,
    STREAM_REQUEST,
    interaction_attributes,
    plain_span,
    ratios,
    serve,
    variant_apps,
)
from bench.common import QUICK, NullExporter, header

VARIANTS = ("bare", "stock", "layer", "own", "span")
SHAPES = "BENCH_SPAN_SHAPES"  # the file with the interaction spans' names and attributes
PHASES = (("json", b"", REQUEST), ("sse20", b"stream=20", STREAM_REQUEST), ("sse220", b"stream=220", STREAM_REQUEST))
N_JSON = 2 if QUICK else 400
N_SSE = 1 if QUICK else 100
# CPython 3.11 specialises its bytecode with exponential back-off: the stock middleware's code
# was measured still ~40 % over its settled count after 60 requests, settled after ~1,000.
WARM_UP = {"json": 3, "sse20": 2, "sse220": 1} if QUICK else {"json": 1200, "sse20": 300, "sse220": 60}
_MARK = "*crc_hqx*"  # callgrind dumps its counts when this function is entered


def _mark() -> None:
    binascii.crc_hqx(b"", 0)


def child(variant: str) -> None:
    """Serve the phases with one variant, marking the end of the warm-up and of each phase.

    The batch processor never exports here (no timer, no batch fills): its thread would run at
    moments valgrind's scheduler decides, and the counts would move with them. The spans of one
    run (~1,300) wait in its queue instead.
    """
    processor = BatchSpanProcessor(
        NullExporter(), max_queue_size=1 << 20, max_export_batch_size=1 << 20, schedule_delay_millis=1e9
    )
    provider, apps = variant_apps(processor)
    if variant == "span":
        with open(os.environ[SHAPES], encoding="utf-8") as file:
            shapes = interaction_attributes_from(file.read())
        plain_span(provider, shapes["json"], WARM_UP["json"])
        gc.collect()
        gc.freeze()
        _mark()
        for label, _, _ in PHASES:  # the same phases: a span per request, of that kind's shape
            plain_span(provider, shapes["sse20" if label != "json" else "json"], N_JSON if label == "json" else N_SSE)
            _mark()
        return
    app = apps[variant]

    async def phases() -> None:
        for label, query, body in PHASES:  # warm-up: imports, caches, the interpreter's specialisation
            await serve(app, query, WARM_UP[label], body)
        # What start-up made is frozen out of the collector's sight: otherwise a full collection
        # (~100M instructions over the imported modules) lands in whichever phase crosses its
        # threshold. Collections of what the requests allocate are still counted.
        gc.collect()
        gc.freeze()
        _mark()
        for label, query, body in PHASES:
            await serve(app, query, N_JSON if label == "json" else N_SSE, body)
            _mark()

    asyncio.run(phases())


def interaction_attributes_from(text: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = json.loads(text)
    for shape in found.values():
        shape["attributes"] = {k: tuple(v) if isinstance(v, list) else v for k, v in shape["attributes"].items()}
    return found


def _count(valgrind: str, variant: str, workdir: str) -> list[int]:
    """Instructions of each phase of one variant (one callgrind run)."""
    out = os.path.join(workdir, f"{variant}.out")
    command = [
        valgrind,
        "--tool=callgrind",
        f"--dump-before={_MARK}",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "bench.bench_instructions",
        "--child",
        variant,
        *(["--quick"] if QUICK else []),
    ]
    # One hash seed for every run: with a random one (Python's default), dicts and sets of strings
    # lay out differently each time, and the same code counted up to ~4k instructions apart
    # from one run to the next.
    environ = {**os.environ, "PYTHONHASHSEED": "0", SHAPES: os.path.join(workdir, "shapes.json")}
    run = subprocess.run(command, capture_output=True, text=True, env=environ)
    if run.returncode != 0:
        raise RuntimeError(f"{variant} under callgrind failed: {run.stderr[-2000:]}")
    # Dump 1 is start-up and warm-up; dumps 2.. are the phases, in order.
    counts = []
    for index in range(2, 2 + len(PHASES)):
        with open(f"{out}.{index}", encoding="utf-8") as dump:
            totals = [line for line in dump if line.startswith("totals:")]
        counts.append(int(totals[0].split()[1]))
    return counts


def main() -> int:
    header("middleware: instructions per request (callgrind)", __doc__ or "")
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed: instruction counts skipped\n")
        return 0
    if hasattr(os, "sched_setaffinity"):  # counts need no quiet CPU: two variants at once, any CPU
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as workdir, ThreadPoolExecutor(max_workers=2) as pool:
        with open(os.path.join(workdir, "shapes.json"), "w", encoding="utf-8") as file:
            json.dump(interaction_attributes(), file)
        counted = dict(zip(VARIANTS, pool.map(lambda v: _count(valgrind, v, workdir), VARIANTS), strict=True))
    per = {
        variant: {label: counts[i] / (N_JSON if label == "json" else N_SSE) for i, (label, _, _) in enumerate(PHASES)}
        for variant, counts in counted.items()
    }
    print(
        f"{'endpoint':8} {'bare':>10} {'stock':>10} {'layer':>10} {'own':>10} {'span':>10}   (instructions per request)"
    )
    for label, _, _ in PHASES:
        row = " ".join(f"{per[v][label]:10,.0f}" for v in VARIANTS)
        print(f"{label:8} {row}")
    per_chunk = (
        (per["layer"]["sse220"] - per["stock"]["sse220"]) - (per["layer"]["sse20"] - per["stock"]["sse20"])
    ) / 200
    print(f"\nper extra SSE chunk, the layer adds {per_chunk:,.0f} instructions (informational)\n")
    results: dict[str, dict[str, float]] = {label: {v: per[v][label] for v in VARIANTS} for label in ("json", "sse20")}
    results["reference"] = {"plain span json": per["span"]["json"], "plain span sse20": per["span"]["sse20"]}
    checks = ratios(results, kind="instructions", unit="instructions")
    return 0 if QUICK or all(checks) else 1


if __name__ == "__main__":
    if "--child" in sys.argv:
        child(sys.argv[sys.argv.index("--child") + 1])
        sys.exit(0)
    sys.exit(main())
