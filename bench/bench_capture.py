"""The capture of provider calls, beside the OpenTelemetry contrib ``openai-v2`` instrumentation.

The real ``openai`` SDK (on httpx2) calls the fake provider (``examples/fake_llm.py``) in another
process on 127.0.0.1 over real HTTP, JSON and a 19-chunk stream. Each figure is this process's CPU
time (``time.process_time()``) per call, the variants taking turns call by call in rotating
order (block by block), so the machine's speed moves them alike:

- ``bare``: the SDK alone;
- ``capture``: otel-analytics' capture of the call (inside a session, spans to a batch processor
  with an exporter that does nothing);
- ``openai-v2``: the contrib instrumentation (same provider and exporter);
- ``decorated``: otel-analytics' manual path instead, ``@oa.interaction("chat")`` on a generator
  of the SDK's chunks (``with oa.interaction(...)`` and ``record_response`` for JSON).

What a variant adds is its figure minus ``bare``'s. Also measured: a request to a host that is not
an LLM provider through a client the capture hooks (against the same request unhooked), and the
time to a stream's first chunk with the provider waiting 20 ms before it (wall clock, capture
against bare).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import openai
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_analytics as oa
from bench import servers
from bench.common import QUICK, NullExporter, header, judge
from otel_analytics import capture

CALLS = 20 if QUICK else 600
MESSAGES: Any = [{"role": "user", "content": "Plan a weekend in Paris"}]


def _provider() -> tuple[Any, str]:
    port = servers.free_port()
    args = ["examples/fake_llm.py", "--port", str(port), "--chunk-delay", "0", "--first-chunk-delay", "0"]
    return servers.start(args, "/v1/models", port), f"http://127.0.0.1:{port}"


def _peer() -> Any:
    """The openai-v2 instrumentor, or ``None`` where it is not installed (the test venv's quick
    runs: ``make bench`` installs it in a venv of its own)."""
    try:
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return OpenAIInstrumentor()


def _hooked_classes() -> tuple[type, ...]:
    """The classes the variants hook: ``send`` of the clients (the capture), the openai SDK's
    ``create`` methods (openai-v2)."""
    import httpx
    from openai.resources.chat.completions import AsyncCompletions, Completions
    from openai.resources.embeddings import AsyncEmbeddings, Embeddings

    clients = (httpx.Client, httpx.AsyncClient, httpx2.Client, httpx2.AsyncClient)
    return (*clients, Completions, AsyncCompletions, Embeddings, AsyncEmbeddings)


class Variants:
    """Switches between the variants: capture hooked or not, openai-v2 on or off.

    Hooking a class or unhooking it makes CPython forget what it had learnt of that class's
    attributes (its specialised bytecode, in the SDK's code too), so the calls just after a
    switch cost more. Each block starts with every class the variants hook touched (an attribute
    set and removed), whichever variant it is: every variant's block starts from the same
    forgetting. Without it, a client hooked with the capture switched off measured 4-5 % faster
    than the same client never hooked (two runs)."""

    def __init__(self, provider: TracerProvider, peer: Any) -> None:
        self._provider = provider
        self._peer = peer
        self._state = "bare"
        self._hooked = _hooked_classes()

    def use(self, name: str) -> None:
        for hooked in self._hooked:
            hooked._bench_touched = True  # type: ignore[attr-defined]
            del hooked._bench_touched  # type: ignore[attr-defined]
        if name == self._state:
            return
        if self._state == "capture":
            capture.uninstall()
        if self._state == "openai-v2":
            self._peer.uninstrument()
        if name == "capture":
            capture.instrument()
        if name == "openai-v2":
            self._peer.instrument(tracer_provider=self._provider)
        self._state = name


def json_call(client: openai.OpenAI, decorated: bool) -> None:
    if decorated:
        with oa.interaction("chat", model="gpt-4o") as it:
            it.record_response(client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
        return
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)


def _chunks(client: openai.OpenAI) -> Iterator[Any]:
    yield from client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )


_decorated_chunks = oa.interaction("chat", model="gpt-4o")(_chunks)


def stream_call(client: openai.OpenAI, decorated: bool) -> None:
    for _ in (_decorated_chunks if decorated else _chunks)(client):
        pass


JUDGED = {
    "JSON": [("10a", "a captured JSON call, added vs openai-v2's", "capture", 0.5)],
    "stream": [
        ("10b", "a captured stream call, added vs openai-v2's", "capture", 0.5),
        ("10c", "a decorated captured stream, added vs openai-v2's", "decorated", 1.0),
    ],
}
"""What is judged of each kind of call: (target, label, variant, limit), what the variant adds
against what openai-v2 adds (``bench_capture_instructions`` judges the same, in instructions)."""


def judge_added(label: str, added: dict[str, float], *, unit: str, kind: str = "cpu") -> bool:
    """The targets of ``label``'s calls (:data:`JUDGED`): what each variant adds against what
    openai-v2 adds (without openai-v2, said, and nothing judged)."""
    if "openai-v2" not in added:
        print("  (openai-v2 is not installed here: make bench installs it; no ratio)")
        return True
    ok = True
    for target, shown, variant, limit in JUDGED[label]:
        ok &= judge(
            target,
            shown,
            added[variant],
            added["openai-v2"],
            limit,
            unit=unit,
            yardstick_name="openai-v2",
            kind=kind,
        )
    return ok


BLOCK = 5 if QUICK else 40
WARM = 2 if QUICK else 5


def cpu_per_call(variants: Variants, names: list[str], call: Callable[[str], object], calls: int) -> dict[str, float]:
    """CPU µs per call of each variant: the variants take turns block by block (their order
    rotating), and the first calls after a switch are not counted. Hooking a class or unhooking
    it makes CPython forget what it had learnt of that class's attributes (its specialised
    bytecode), so a call made just after a switch costs more, whichever way it went. The figure
    is the median of the calls counted."""
    samples: dict[str, list[float]] = {name: [] for name in names}
    for block in range(max(calls // BLOCK, 1)):
        order = names[block % len(names) :] + names[: block % len(names)]
        for name in order:
            variants.use(name)
            for n in range(BLOCK + WARM):
                started = time.process_time()
                call(name)
                if n >= WARM:
                    samples[name].append((time.process_time() - started) * 1e6)
    variants.use("bare")
    return {name: statistics.median(values) for name, values in samples.items()}


def first_chunk_ms(client: openai.OpenAI) -> float:
    started = time.perf_counter()
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    next(iter(stream))
    took = (time.perf_counter() - started) * 1000
    stream.close()
    return took


def main() -> int:
    header("Capture of provider calls: CPU added per call, beside openai-v2", __doc__ or "")
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NullExporter()))
    handle = oa.configure(tracer_provider=provider, exporters=())
    capture.uninstall()  # the variants hook and unhook it in turn
    peer = _peer()
    variants = Variants(provider, peer)
    names = ["bare", "capture", "decorated"] + (["openai-v2"] if peer is not None else [])
    process, url = _provider()
    slow_process = None
    ok = True
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-bench", max_retries=0)
        with oa.session("conv-bench", user_id="bench", start=False, end=False):
            for label, call in (("JSON", json_call), ("stream", stream_call)):

                def one(name: str, call: Callable[[openai.OpenAI, bool], None] = call) -> None:
                    call(client, name == "decorated")

                figures = cpu_per_call(variants, names, one, CALLS)
                added = {name: figures[name] - figures["bare"] for name in names if name != "bare"}
                print(f"  {label}: " + ", ".join(f"{name} {figures[name]:.0f} µs" for name in names))
                print(f"  {label}: added " + ", ".join(f"{name} +{value:.0f} µs" for name, value in added.items()))
                ok &= judge_added(label, added, unit="µs")
            # A host that is not an LLM provider, through a hooked client.
            with httpx2.Client(base_url=url) as plain:

                def other(name: str) -> None:
                    plain.post("/v1/other", json={}).read()

                figures = cpu_per_call(variants, ["bare", "capture"], other, CALLS)
            ok &= judge(
                "10d",
                "a request that is not an LLM call, hooked vs not",
                figures["capture"],
                figures["bare"],
                1.05,
                unit="µs",
                yardstick_name="not hooked",
            )
        client.close()
        # Time to the first chunk, the provider waiting 20 ms before it.
        port = servers.free_port()
        args = ["examples/fake_llm.py", "--port", str(port), "--chunk-delay", "0", "--first-chunk-delay", "0.02"]
        slow_process = servers.start(args, "/v1/models", port)
        slow = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-bench", max_retries=0)
        latency: dict[str, list[float]] = {"bare": [], "capture": []}
        for n in range(CALLS // 4 or 1):
            for name in ["bare", "capture"] if n % 2 == 0 else ["capture", "bare"]:
                variants.use(name)
                latency[name].append(first_chunk_ms(slow))
        variants.use("bare")
        slow.close()
        medians = {name: statistics.median(values) for name, values in latency.items()}
        print(f"  first chunk: bare {medians['bare']:.2f} ms, capture {medians['capture']:.2f} ms")
        ok &= judge(
            "10e",
            "time to the first chunk, captured vs not",
            medians["capture"],
            medians["bare"],
            1.05,
            unit="ms",
            yardstick_name="not captured",
        )
    finally:
        servers.stop(process)
        if slow_process is not None:
            servers.stop(slow_process)
        handle.shutdown()
    return 0 if ok or QUICK else 1


if __name__ == "__main__":
    sys.exit(main())
