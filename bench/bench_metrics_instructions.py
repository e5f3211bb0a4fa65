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

import gc

from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import otel_analytics as oa
from bench import callgrind
from bench.bench_metrics import BLOCK, WORKLOADS, Setup, judge_variants
from bench.common import QUICK, NullExporter, header

VARIANTS = ("off", "built", "joined")
BLOCKS = 1 if QUICK else 3
WARM_UP_BLOCKS = 1 if QUICK else 3


def child(variant: str) -> None:
    """Each workload's blocks with one variant, marking the end of the warm-up and of each
    workload. The spans are dropped as they end (see bench_capture_instructions)."""
    setup = Setup(SimpleSpanProcessor(NullExporter()))
    with oa.session("bench-metrics", user_id="u1"):
        for _, work in WORKLOADS:
            for _ in range(WARM_UP_BLOCKS):
                setup.block(variant, work)
        # What start-up made is frozen out of the collector's sight (see bench_instructions).
        gc.collect()
        gc.freeze()
        callgrind.mark()
        for _, work in WORKLOADS:
            for _ in range(BLOCKS):
                setup.block(variant, work)
            callgrind.mark()
    setup.close()


def main() -> int:
    header("GenAI metrics: instructions per interaction (callgrind), off and on", __doc__ or "")
    counted = callgrind.count("bench.bench_metrics_instructions", VARIANTS, len(WORKLOADS))
    if counted is None:
        return 0
    interactions = BLOCKS * BLOCK
    ok = True
    for index, (name, _) in enumerate(WORKLOADS):
        per = {variant: counts[index] / interactions for variant, counts in counted.items()}
        print(f"  {name}: " + ", ".join(f"{variant} {value:,.0f}" for variant, value in per.items()))
        ok &= judge_variants(name, per["off"], per["built"], per["joined"], unit="instructions", kind="instructions")
    return 0 if ok or QUICK else 1


if __name__ == "__main__":
    callgrind.entry(child, main)
