"""Targets 1-3: what the analytics middleware adds to a chat request, and to the first SSE chunk,
as ratios to yardsticks measured in the same run: the stock ``opentelemetry-instrumentation-asgi``
middleware (send/receive spans off) on the same requests, and one plain SDK span carrying the
attributes the layer's interaction span carries (``interaction_attributes``), made by the app
inside the stock middleware and timed request by request like the layer. (Until 2026-12-03 the
span was timed in a tight loop of its own, where it ran with warm caches a request does not leave
it: 31.5 µs there against 37.8 µs in requests, in the run that changed it. Both are printed.)

CPU per request (targets 1 and 2) is measured in process, over the ASGI protocol itself, so the
figure is server CPU with no HTTP parsing or client noise (the same for every variant). Each
request is timed alone (``time.process_time_ns()`` around it) and the variants take turns request
by request, in rotating order, and the JSON and SSE requests are spread over the same run: a slow
moment of the shared VM falls on all of them alike, and each figure is the median of thousands of
requests. (Rounds of 200 requests per variant, the
method until 2026-11-30, let two columns doing nearly the same work, ``layer`` and ``own``,
disagree by up to 70 µs in one run; taking turns per request they agree within a few µs.) Time
to the first SSE chunk (target 3) is measured over real HTTP against uvicorn servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import functools
import json
import statistics
import sys
import time
from typing import Any

import httpx
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

import otel_analytics as oa
from bench import servers
from bench.common import COMPLETION, QUICK, NullExporter, chat_app, header, judge, rounds
from otel_analytics import runtime as oa_runtime

N = 50 if QUICK else 500  # spans (and parses) per round of the reference's microbenchmarks
ROUNDS = 3 if QUICK else 40
# Requests per variant, timed one by one, after a warm-up (CPython specialises its bytecode with
# exponential back-off: the stock middleware settles after ~1,000 requests).
TIMED = (
    {"json": 40, "history": 10, "sse20": 40, "sse220": 10}
    if QUICK
    else {"json": 4000, "history": 1000, "sse20": 3000, "sse220": 800}
)
WARM_UP = (
    {"json": 5, "history": 2, "sse20": 5, "sse220": 2}
    if QUICK
    else {"json": 1000, "history": 200, "sse20": 300, "sse220": 60}
)
TTFB_ROUNDS = 3 if QUICK else 9
SPAN_ATTRIBUTES = (
    ("gen_ai.operation.name", "chat"),
    ("gen_ai.provider.name", "openai"),
    ("gen_ai.request.model", "gpt-4o-mini"),
    ("gen_ai.usage.input_tokens", 1200),
    ("gen_ai.usage.output_tokens", 300),
    ("session.id", "conv-1"),
    ("user.id", "user-1"),
    ("analytics.interaction.type", "chat"),
)
REQUEST = json.dumps(
    {
        "conversationId": "conv-bench",
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Plan a weekend in Paris"}],
    }
).encode()
# The streaming request, as a backend that counts tokens sends it (usage comes in the last chunk).
STREAM_REQUEST = json.dumps({**json.loads(REQUEST), "stream": True, "stream_options": {"include_usage": True}}).encode()
# The same request from a backend that sends the whole conversation each time (OpenAI's format,
# in the order its SDK writes it): 100 turns, ~52 KB. Informational: the targets name no size.
HISTORY_REQUEST = json.dumps(
    {
        "messages": [
            {"role": ("user", "assistant")[i % 2], "content": f"Turn {i}. " + "Plan a weekend in Paris. " * 19}
            for i in range(100)
        ],
        "model": "gpt-4o-mini",
        "conversationId": "conv-bench",
    }
).encode()
ENDPOINTS = (
    ("json", b"", REQUEST),
    ("history", b"", HISTORY_REQUEST),
    ("sse20", b"stream=20", STREAM_REQUEST),
    ("sse220", b"stream=220", STREAM_REQUEST),
)


def scope(query: bytes, body: bytes = REQUEST) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/messages",
        "raw_path": b"/api/messages",
        "query_string": query,
        "root_path": "",
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-user-id", b"u1"),
            (b"user-agent", b"bench"),
        ],
    }


def _receive_request(body: bytes = REQUEST) -> Any:
    """The ASGI ``receive`` of one request: its body, then a disconnect."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


async def _discard(message: dict[str, Any]) -> None:
    pass


async def serve(app: Any, query: bytes, n: int, body: bytes = REQUEST) -> float:
    """CPU µs per request for ``n`` requests to ``app``."""
    started = time.process_time()
    for _ in range(n):
        await app(scope(query, body), _receive_request(body), _discard)
    return (time.process_time() - started) / n * 1e6


async def cpu_of_one(app: Any, query: bytes, body: bytes = REQUEST) -> int:
    """Process CPU ns of one request to ``app``."""
    request_scope, receive = scope(query, body), _receive_request(body)
    started = time.process_time_ns()
    await app(request_scope, receive, _discard)
    return time.process_time_ns() - started


async def taking_turns(variants: dict[str, Any], counts: dict[str, int]) -> dict[str, dict[str, float]]:
    """Median CPU µs per request of each variant and endpoint. The variants take turns request by
    request, and the endpoints' requests are spread evenly over the same run: the stock
    middleware's figure on each kind of response (the yardstick of that kind's targets) is
    measured at the same moments of the machine as everything else."""
    names, requests = list(variants), {label: (query, body) for label, query, body in ENDPOINTS}
    samples: dict[str, dict[str, list[int]]] = {label: {name: [] for name in names} for label in counts}
    longest = max(counts.values())
    for i in range(longest):
        for label, n in counts.items():
            if (i * n) // longest == ((i + 1) * n) // longest:
                continue  # this endpoint's requests are spread over the longest one's
            turn = len(samples[label][names[0]])
            for name in names[turn % len(names) :] + names[: turn % len(names)]:
                samples[label][name].append(await cpu_of_one(variants[name], *requests[label]))
    return {
        label: {name: statistics.median(values) / 1e3 for name, values in by_variant.items()}
        for label, by_variant in samples.items()
    }


def sdk_span(provider: TracerProvider, n: int) -> float:
    """CPU µs of one SDK span as the reference measured it: current, 8 attributes set one by one,
    through a batch processor."""
    tracer = provider.get_tracer("reference")
    started = time.process_time()
    for _ in range(n):
        with tracer.start_as_current_span("chat gpt-4o-mini") as span:
            for key, value in SPAN_ATTRIBUTES:
                span.set_attribute(key, value)
    return (time.process_time() - started) / n * 1e6


def completion_parse(n: int) -> float:
    """CPU µs of parsing the bench's chat completion (~1.3 KB) and reading its model and usage."""
    raw = json.dumps(COMPLETION).encode()
    started = time.process_time()
    for _ in range(n):
        document = json.loads(raw)
        usage = document.get("usage") or {}
        document.get("model"), usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (time.process_time() - started) / n * 1e6


_ATTRIBUTES_SCRIPT = """
import asyncio, json, sys
from otel_analytics.testing import CaptureAnalytics
from bench.bench_middleware import ENDPOINTS, serve
from bench.common import chat_app
import otel_analytics as oa
capture = CaptureAnalytics()
app = oa.AnalyticsMiddleware(chat_app())
found = {}
for label, query, body in ENDPOINTS:
    if label in ("json", "sse20"):
        capture.clear()
        asyncio.run(serve(app, query, 1, body))
        (chat,) = capture.spans(type="chat")
        found[label] = {"name": chat["name"], "attributes": chat["attributes"]}
capture.close()
print(json.dumps(found))
"""


def interaction_attributes() -> dict[str, dict[str, Any]]:
    """The name and attributes of the layer's interaction span on a JSON and an SSE-20 request
    (recorded in a process of its own): what the plain-span yardstick carries."""
    import subprocess

    done = subprocess.run([sys.executable, "-c", _ATTRIBUTES_SCRIPT], capture_output=True, text=True, check=True)
    found: dict[str, dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    for shape in found.values():  # JSON has no tuples: the finish reasons are one
        shape["attributes"] = {k: tuple(v) if isinstance(v, list) else v for k, v in shape["attributes"].items()}
    return found


def plain_span(provider: TracerProvider, shape: dict[str, Any], n: int) -> float:
    """CPU µs of one plain SDK span with ``shape``'s name and attributes, given at its start, ended
    at once, through the same batch processor."""
    tracer = provider.get_tracer("yardstick")
    name, attributes = shape["name"], shape["attributes"]
    started = time.process_time()
    for _ in range(n):
        tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes).end()
    return (time.process_time() - started) / n * 1e6


def with_plain_span(app: Any, provider: TracerProvider, shapes: dict[str, dict[str, Any]]) -> Any:
    """``app`` making one plain SDK span per request, with the name and attributes of the layer's
    interaction span on that kind of request (``shapes``), given at its start and ended when the
    app returns: the plain-span yardstick, measured in requests like the layer it is compared to."""
    tracer = provider.get_tracer("yardstick")

    async def app_with_span(scope: dict[str, Any], receive: Any, send: Any) -> None:
        shape = shapes["sse20" if scope["query_string"] else "json"]
        span = tracer.start_span(shape["name"], kind=SpanKind.CLIENT, attributes=shape["attributes"])
        try:
            await app(scope, receive, send)
        finally:
            span.end()

    return app_with_span


def variant_apps(
    processor: BatchSpanProcessor | None = None, shapes: dict[str, dict[str, Any]] | None = None
) -> tuple[TracerProvider, dict[str, Any]]:
    """The apps compared (analytics configured with a no-op exporter): bare, the stock middleware
    with send/receive spans off, the analytics layer inside it, the middleware alone, and (given
    the interaction spans' ``shapes``) the stock middleware over an app making one plain span."""
    provider = TracerProvider()
    provider.add_span_processor(processor or BatchSpanProcessor(NullExporter(), max_queue_size=1 << 20))
    oa.configure(tracer_provider=provider, exporters=())
    # configure() loads the price table in a thread (an import of ~0.5 s); finish it here, or it
    # lands in whichever measurement runs when it does (half the spread of early counts).
    oa_runtime.current().prices.warm()
    app = chat_app()
    variants = {
        "bare": app,
        "stock": OpenTelemetryMiddleware(app, exclude_spans=["receive", "send"], tracer_provider=provider),
        # the analytics layer joining the server span an outer instrumentation made
        "layer": OpenTelemetryMiddleware(
            oa.AnalyticsMiddleware(app), exclude_spans=["receive", "send"], tracer_provider=provider
        ),
        # the middleware alone on an uninstrumented app: it adds the server span itself
        "own": oa.AnalyticsMiddleware(app),
    }
    if shapes is not None:
        variants["span"] = OpenTelemetryMiddleware(
            with_plain_span(app, provider, shapes), exclude_spans=["receive", "send"], tracer_provider=provider
        )
    return provider, variants


def cpu_per_request(shapes: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    provider, variants = variant_apps(shapes=shapes)
    for label, query, body in ENDPOINTS:
        for variant in variants.values():  # warm-up: imports, price lookups, caches, specialisation
            asyncio.run(serve(variant, query, WARM_UP[label], body))
    results = asyncio.run(taking_turns(variants, TIMED))
    # Medians of rounds, as the reference measured them.
    results["reference"] = rounds(
        {
            "sdk span": lambda: sdk_span(provider, N),
            "parse": lambda: completion_parse(N),
            "loop span json": lambda: plain_span(provider, shapes["json"], N),
            "loop span sse20": lambda: plain_span(provider, shapes["sse20"], N),
        },
        ROUNDS,
    )
    # The yardstick of 1b and 2b: what one plain span adds to a request, timed like the layer.
    for label in ("json", "sse20"):
        results["reference"][f"plain span {label}"] = results[label]["span"] - results[label]["stock"]
    return results


def first_chunk_times(delay: float) -> dict[str, float]:
    processes, urls = [], {}
    try:
        for variant in ("bare", "stock", "analytics", "layer"):
            port = servers.free_port()
            processes.append(servers.start(["-m", "bench.serve", variant, str(port), str(delay)], "/", port))
            urls[variant] = f"http://127.0.0.1:{port}/api/messages?stream=20"
        with httpx.Client(timeout=10) as client:

            def ttfb(url: str) -> float:
                samples = []
                for _ in range(10 if QUICK else 60):
                    started = time.perf_counter()
                    with client.stream(
                        "POST", url, content=STREAM_REQUEST, headers={"content-type": "application/json"}
                    ) as response:
                        first = True
                        for _line in response.iter_lines():  # read to the end, timing the first line
                            if first:
                                samples.append((time.perf_counter() - started) * 1e3)
                                first = False
                return statistics.median(samples)

            return rounds({name: functools.partial(ttfb, url) for name, url in urls.items()}, TTFB_ROUNDS)
    finally:
        for process in processes:
            servers.stop(process)


LIMIT_OVER_STOCK = 0.35
"""The layer over an existing server span adds at most this share of what the stock middleware adds."""
LIMIT_OVER_SPAN = 1.5
"""... and at most this many plain SDK spans carrying the same attributes."""
LIMIT_OWN = 1.5
"""The middleware adding its own server span costs at most this many stock middlewares."""
LIMIT_FIRST_CHUNK = 1.05


def ratios(results: dict[str, dict[str, float]], kind: str = "cpu", unit: str = "µs") -> list[bool]:
    """Targets 1a-c (JSON) and 2a-c (SSE, 20 chunks) from per-request figures of the variants and
    the plain span (``results[label]`` has bare, stock, layer, own; ``results["reference"]`` the
    plain spans)."""
    checks = []
    for number, label, name in (("1", "json", "JSON chat"), ("2", "sse20", "SSE, 20 chunks")):
        r = results[label]
        stock, layer, own = r["stock"] - r["bare"], r["layer"] - r["stock"], r["own"] - r["bare"]
        span = results["reference"][f"plain span {label}"]
        checks += [
            judge(
                f"{number}a",
                f"{name}: added by the layer over a server span, vs the stock middleware",
                layer,
                stock,
                LIMIT_OVER_STOCK,
                unit=unit,
                yardstick_name="stock middleware",
                kind=kind,
            ),
            judge(
                f"{number}b",
                f"{name}: added by the layer, vs one plain SDK span with its attributes",
                layer,
                span,
                LIMIT_OVER_SPAN,
                unit=unit,
                yardstick_name="plain SDK span",
                kind=kind,
            ),
            judge(
                f"{number}c",
                f"{name}: the middleware with its own server span, vs the stock middleware",
                own,
                stock,
                LIMIT_OWN,
                unit=unit,
                yardstick_name="stock middleware",
                kind=kind,
            ),
        ]
    return checks


def main() -> int:
    header("middleware: server CPU per request, time to first chunk", __doc__ or "")
    shapes = interaction_attributes()
    results = cpu_per_request(shapes)
    print(
        f"{'endpoint':8} {'bare':>9} {'stock':>9} {'layer':>9} {'own':>9} {'span':>9}   {'stock-bare':>10} "
        f"{'layer-stock':>11} "
        f"{'own-bare':>9}   (CPU µs per request, median; requests per variant: {TIMED['json']:,} JSON, "
        f"{TIMED['history']:,} JSON with a {len(HISTORY_REQUEST) // 1000} KB history, {TIMED['sse20']:,} SSE-20, "
        f"{TIMED['sse220']:,} SSE-220)"
    )
    for label in ("json", "history", "sse20", "sse220"):
        r = results[label]
        print(
            f"{label:8} {r['bare']:9.1f} {r['stock']:9.1f} {r['layer']:9.1f} {r['own']:9.1f} {r['span']:9.1f}   "
            f"{r['stock'] - r['bare']:10.1f} {r['layer'] - r['stock']:11.1f} {r['own'] - r['bare']:9.1f}"
        )
    reference = results["reference"]
    print(
        f"plain SDK span with the interaction's attributes ({len(shapes['json']['attributes'])} on JSON, "
        f"{len(shapes['sse20']['attributes'])} on SSE), added to a request inside the stock middleware: "
        f"{reference['plain span json']:.1f} / {reference['plain span sse20']:.1f} µs (the yardstick of 1b "
        f"and 2b); the same spans made in a loop of {N}: {reference['loop span json']:.1f} / "
        f"{reference['loop span sse20']:.1f} µs; the reference's 8-attribute span, set one by one: "
        f"{reference['sdk span']:.1f} µs; parsing a {len(json.dumps(COMPLETION)) / 1000:.1f} KB completion "
        f"{reference['parse']:.1f} µs"
    )
    per_chunk = (
        (results["sse220"]["layer"] - results["sse220"]["stock"])
        - (results["sse20"]["layer"] - results["sse20"]["stock"])
    ) / 200  # 200 extra chunks: a difference well above the run-to-run noise
    stock_per_chunk = (
        (results["sse220"]["stock"] - results["sse220"]["bare"])
        - (results["sse20"]["stock"] - results["sse20"]["bare"])
    ) / 200
    history_extra = (results["history"]["layer"] - results["history"]["stock"]) - (
        results["json"]["layer"] - results["json"]["stock"]
    )
    print(
        f"per extra SSE chunk: the layer adds {per_chunk:.2f} µs, the stock middleware {stock_per_chunk:.2f} µs "
        f"(informational); a request carrying its {len(HISTORY_REQUEST) // 1000} KB history: the layer adds "
        f"{history_extra:.1f} µs more than to the small one (informational)"
    )
    delay = 0.02
    ttfb = first_chunk_times(delay)
    print(
        f"\ntime to first SSE chunk over HTTP (fake LLM first-token delay {delay * 1e3:g} ms), median ms: "
        f"bare {ttfb['bare']:.2f}, stock {ttfb['stock']:.2f}, analytics (its own server span) "
        f"{ttfb['analytics']:.2f}, layer (stock + analytics) {ttfb['layer']:.2f}\n"
    )
    checks = ratios(results)
    checks.append(
        judge(
            "3",
            "time to the first SSE chunk, the middleware vs the bare app",
            ttfb["analytics"],
            ttfb["bare"],
            LIMIT_FIRST_CHUNK,
            unit="ms",
            yardstick_name="bare app",
        )
    )
    return 0 if QUICK or all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
