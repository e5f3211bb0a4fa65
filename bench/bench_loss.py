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

import otel_analytics as oa
from bench import servers
from bench.common import QUICK, header, verdict

RATE = next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--rate=")), 15_000)
SECONDS = 1.0 if QUICK else 10.0


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    header("loss under load: a tracker answering in 50 ms", __doc__ or "")
    sink, url = servers.sink(delay_ms=50)
    try:
        handle = oa.configure(tracer_provider=TracerProvider(), exporters="tracker", tracker_url=url, retry_budget_s=60)
        oa.track_interaction(session_id="warm-up", user_id="u", model_name="gpt-4o-mini", prompt_tokens=1)
        handle.force_flush(timeout=30)  # prices loaded, connections open: growth from here is the queue's
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
        cpu = time.process_time() - cpu_started
        peak = max(peak, rss_mb())
        stats = handle.stats()["tracker"]
        handle.shutdown()
        received = httpx.get(f"{url}/count").json()["interactions"]
    finally:
        servers.stop(sink)
    lost = total + 1 - received  # the warm-up interaction too
    print(
        f"offered {RATE}/s for {SECONDS:g} s: {total} interactions recorded in {elapsed:.1f} s "
        f"({total / elapsed:,.0f}/s achieved); flushed: {flushed}"
    )
    print(f"sink received {received}; exporter counters: {stats}")
    print(f"this process's CPU (recording and exporting, every thread): {cpu / total * 1e6:.0f} µs per interaction")
    print(f"RSS {before:.0f} MB before, peak {peak:.0f} MB (+{peak - before:.0f} MB)\n")
    checks = [
        verdict(
            "5a. interactions lost",
            lost,
            0,
            "interactions",
            note=f" [the loop reached {total / elapsed:,.0f}/s of the {RATE:,}/s offered]",
        ),
        verdict("5b. queue memory: peak RSS growth", peak - before, 64, "MB"),
    ]
    return 0 if QUICK or all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
