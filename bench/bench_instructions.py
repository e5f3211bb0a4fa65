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
import gc
import json
import os
from typing import Any

from opentelemetry.sdk.trace.export import BatchSpanProcessor

from bench import callgrind
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
        callgrind.mark()
        for label, _, _ in PHASES:  # the same phases: a span per request, of that kind's shape
            plain_span(provider, shapes["sse20" if label != "json" else "json"], N_JSON if label == "json" else N_SSE)
            callgrind.mark()
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
        callgrind.mark()
        for label, query, body in PHASES:
            await serve(app, query, N_JSON if label == "json" else N_SSE, body)
            callgrind.mark()

    asyncio.run(phases())


def _write_shapes(workdir: str) -> dict[str, str]:
    """The interaction spans' names and attributes, for the plain-span variant to copy."""
    path = os.path.join(workdir, "shapes.json")
    with open(path, "w", encoding="utf-8") as file:
        json.dump(interaction_attributes(), file)
    return {SHAPES: path}


def interaction_attributes_from(text: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = json.loads(text)
    for shape in found.values():
        shape["attributes"] = {k: tuple(v) if isinstance(v, list) else v for k, v in shape["attributes"].items()}
    return found


def main() -> int:
    header("middleware: instructions per request (callgrind)", __doc__ or "")
    counted = callgrind.count("bench.bench_instructions", VARIANTS, len(PHASES), _write_shapes)
    if counted is None:
        return 0
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
    callgrind.entry(child, main)
