"""Shared pieces of the benchmarks: the apps, a no-op exporter, interleaved rounds, a results table.

Every benchmark measures its variants side by side in one run: rounds interleave the variants
in a rotating order, each round measures every variant, and the figure kept is the median (or,
for CPU time, the 10th percentile) of the rounds. Ratios and deltas between variants of the same
run are what the targets are about; the absolute figures depend on the machine and its neighbours.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

QUICK = "--quick" in sys.argv
"""A smoke run (CI runs every benchmark this way to keep it working): tiny counts, no verdicts."""

COMPLETION = {
    "id": "chatcmpl-AbCdEf0123456789",
    "object": "chat.completion",
    "created": 1764410000,
    "model": "gpt-4o-mini-2024-07-18",
    "system_fingerprint": "fp_0123456789",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris in spring is lovely. " * 30, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}


def sse_events(n: int) -> list[bytes]:
    """``n`` events as OpenAI streams them when the request asks for usage
    (``stream_options.include_usage``, which a backend that counts tokens sets): compact JSON,
    ``"usage":null`` in every chunk but the last, ``n - 1`` deltas and the usage chunk, then ``[DONE]``."""
    base = {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "created": 1764410000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0123456789",
    }
    events = []
    for i in range(n - 1):
        delta = {"role": "assistant", "content": ""} if i == 0 else {"content": f"word{i} "}
        finish = "stop" if i == n - 2 else None
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        events.append(base | {"choices": [choice], "usage": None})
    events.append(
        base | {"choices": [], "usage": {"prompt_tokens": 300, "completion_tokens": n - 1, "total_tokens": 300 + n - 1}}
    )
    return [f"data: {json.dumps(e, separators=(',', ':'))}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


def chat_app(first_chunk_delay: float = 0.0) -> Starlette:
    """``POST /api/messages``: JSON completion; ``?stream=N``: SSE with N events (as in the anchors)."""
    completion = json.dumps(COMPLETION).encode()
    streams = {n: sse_events(n) for n in (20, 220)}

    async def messages(request: Request) -> Response:
        await request.body()
        n = int(request.query_params.get("stream", "0"))
        if not n:
            return Response(completion, media_type="application/json")

        async def generate() -> Any:
            if first_chunk_delay:
                await asyncio.sleep(first_chunk_delay)
            for event in streams[n]:
                yield event

        return StreamingResponse(generate(), media_type="text/event-stream")

    return Starlette(routes=[Route("/api/messages", messages, methods=["POST"])])


class NullExporter(SpanExporter):
    """Counts and drops: the exporter "that does nothing" of the targets."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def summarise(values: list[float], statistic: str) -> float:
    """``median``, or ``p10`` (the 10th percentile: on a shared VM, CPU time also counts the moments
    the hypervisor takes the core away, so the low end of many short rounds is the cost itself)."""
    if statistic == "p10":
        return sorted(values)[len(values) // 10]
    return statistics.median(values)


def rounds(variants: dict[str, Callable[[], float]], count: int, statistic: str = "median") -> dict[str, float]:
    """Each variant measured ``count`` times, the order rotating each round; one figure per variant."""
    names = list(variants)
    results: dict[str, list[float]] = {name: [] for name in names}
    for r in range(count):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            results[name].append(variants[name]())
    return {name: summarise(values, statistic) for name, values in results.items()}


RESULTS = "BENCH_RESULTS"
"""The variable ``make bench`` (bench/run_all.py) sets to a file where each verdict is appended
as a JSON line, for the one table it prints at the end."""


def judge(
    target: str,
    label: str,
    figure: float,
    yardstick: float | None,
    limit: float,
    *,
    unit: str,
    yardstick_name: str = "",
    higher_is_better: bool = False,
    kind: str = "cpu",
    note: str = "",
) -> bool:
    """A target judged as a ratio: ``figure / yardstick`` (both measured in this run) against
    ``limit``; with no yardstick, ``figure`` itself against ``limit`` (a count that must be 0, a
    bound). ``kind``: ``cpu`` or ``instructions`` (the same target counted by callgrind, which
    the table uses to tell noise from a miss). Printed, and recorded for the table."""
    ratio = figure / yardstick if yardstick else figure
    ok = ratio >= limit if higher_is_better else ratio <= limit
    if figure < 0 or (yardstick is not None and yardstick < 0):
        # What a variant adds, below zero: the run's noise was larger than what it measures.
        # No ratio of that is a pass.
        ok = False
        note += " (below zero: the noise of this run was larger than what is measured)"
    status = "n/a" if QUICK else ("PASS" if ok else "FAIL")
    sign = ">=" if higher_is_better else "<="
    if yardstick:
        shown = f"{figure:,.2f} {unit} / {yardstick:,.2f} {unit} ({yardstick_name}) = {ratio:.2f}x"
        print(f"  {status:4}  {target} {label}: {shown} (limit {sign} {limit:g}x){note}")
    else:
        print(f"  {status:4}  {target} {label}: {figure:,.2f} {unit} (limit {sign} {limit:g} {unit}){note}")
    path = os.environ.get(RESULTS)
    if path:
        record = {
            "target": target,
            "label": label,
            "figure": figure,
            "yardstick": yardstick,
            "yardstick_name": yardstick_name,
            "ratio": ratio if yardstick else None,
            "limit": limit,
            "higher_is_better": higher_is_better,
            "unit": unit,
            "kind": kind,
            "ok": ok,
            "quick": QUICK,
            "bench": os.environ.get("BENCH_NAME", ""),
        }
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
    return ok


def verdict(
    label: str, measured: float, target: float, unit: str, *, lower_is_better: bool = True, note: str = ""
) -> bool:
    """A ratio measured already (``unit`` ``x``), or a figure against a fixed limit: recorded as
    :func:`judge` records, its target the label's leading number ("8a. ...")."""
    number, _, rest = label.partition(" ")
    target_id = number.rstrip(".") if number[:1].isdigit() else ""
    return judge(
        target_id or label,
        rest if target_id else "",
        measured,
        None,
        target,
        unit=unit,
        higher_is_better=not lower_is_better,
        note=note,
    )


def header(title: str, method: str) -> None:
    print(f"\n== {title} ==")
    print(f"python {sys.version.split()[0]}, pid {os.getpid()}, {os.cpu_count()} cpus")
    print(method.strip())
    print()
