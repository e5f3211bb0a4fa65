"""Target 5: interactions lost with a slow tracker under load, and the queue's memory.

A paced loop records interactions (``track_interaction``) at the offered rate for the duration,
through ``configure()``'s tracker exporter and its batch processor, to a sink that takes 50 ms to
answer every request. Lost = recorded - received by the sink after a final flush; the exporter's
own counters say where any loss happened. The tracker processor's queues are bounded (8,192
spans, then 32,768 encoded calls), so memory is bounded whatever the load; the peak RSS growth
is printed. The offered rate is what the loop aims at; on a slow machine the loop itself may
not reach it (the producer and the exporter share one interpreter), and the achieved rate is
printed, with the process's CPU per interaction (recording and exporting together).
"""

from __future__ import annotations

import resource
import sys
import time

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_analytics as oa
from bench import servers
from bench.common import QUICK, header, judge
from otel_analytics.exporters.tracker import TrackerSpanExporter

RATE = next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--rate=")), 15_000)
SECONDS = 1.0 if QUICK else 10.0


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def offer(url: str, provider: TracerProvider | None = None) -> dict[str, float]:
    """Record at the offered rate through ``configure()`` (its own tracker processor; with
    ``provider``, whatever processors that has); what reached the sink and what it cost."""
    sink_count = httpx.get(f"{url}/count").json()["interactions"]
    if provider is None:
        handle = oa.configure(tracer_provider=TracerProvider(), exporters="tracker", tracker_url=url, retry_budget_s=60)
    else:
        handle = oa.configure(tracer_provider=provider, exporters=(), tracker_url=url)
    oa.track_interaction(session_id="warm-up", user_id="u", model_name="gpt-4o-mini", prompt_tokens=1)
    handle.force_flush(timeout=30)
    if provider is not None:
        provider.force_flush(30_000)
    before = rss_mb()
    peak = before
    total = int(RATE * SECONDS)
    started = time.perf_counter()
    cpu_started = time.process_time()
    for n in range(total):
        oa.track_interaction(
            session_id=f"conv-{n % 200}",
            user_id=f"user-{n % 20}",
            model_name="gpt-4o-mini",
            prompt_tokens=1200,
            completion_tokens=300,
            compute_duration_ms=900,
        )
        if n % 1000 == 999:
            peak = max(peak, rss_mb())
            ahead = (n + 1) / RATE - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
    elapsed = time.perf_counter() - started
    flushed = handle.force_flush(timeout=120)
    if provider is not None:
        flushed = provider.force_flush(120_000) and flushed
    cpu = time.process_time() - cpu_started
    peak = max(peak, rss_mb())
    stats = handle.stats().get("tracker", {})
    handle.shutdown()
    if provider is not None:
        provider.shutdown()
    received = httpx.get(f"{url}/count").json()["interactions"] - sink_count
    lost = total + 1 - received  # the warm-up interaction too
    print(
        f"  offered {RATE}/s for {SECONDS:g} s: {total} recorded in {elapsed:.1f} s ({total / elapsed:,.0f}/s "
        f"achieved); flushed: {flushed}; the sink received {received}; exporter counters: {stats}"
    )
    cpu_us, grown = cpu / total * 1e6, peak - before
    print(f"  CPU (recording and exporting, every thread): {cpu_us:.0f} µs per interaction; RSS +{grown:.0f} MB")
    return {"lost": lost, "total": total + 1, "rate": total / elapsed, "rss": peak - before}


def main() -> int:
    header("loss under load: a tracker answering in 50 ms", __doc__ or "")
    sink, url = servers.sink(delay_ms=50)
    try:
        print("otel-analytics' tracker processor:")
        ours = offer(url)
        print("the SDK's BatchSpanProcessor (its defaults) in front of the same tracker exporter:")
        stock_provider = TracerProvider()
        stock_provider.add_span_processor(BatchSpanProcessor(TrackerSpanExporter(url=url)))
        stock = offer(url, stock_provider)
    finally:
        servers.stop(sink)
    stock_share = stock["lost"] / stock["total"] * 100
    print()
    checks = [
        judge(
            "5",
            "interactions lost with a 50 ms tracker at the offered rate",
            ours["lost"] / ours["total"] * 100,
            None,
            0,
            unit="%",
            note=f" [the SDK's batch processor, same run: {stock_share:.1f} % lost; the loop reached "
            f"{ours['rate']:,.0f}/s of the {RATE:,}/s offered]",
        ),
    ]
    return 0 if QUICK or all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
