"""Target 7: memory of an instrumented process while the tracker is down.

The process records 1,000,000 interactions through ``configure()``'s tracker exporter while
nothing listens at the tracker's address (connection refused). The tracker processor's queue is
bounded (8,192 spans, then 32,768 encoded calls; oldest dropped first, and counted), the exporter retries within
its budget and then counts what it drops, so memory must stay flat. RSS is read from /proc after a warm-up
and at every 50,000 interactions; the growth is the peak minus the warm RSS.
"""

from __future__ import annotations

import sys
import time

from opentelemetry.sdk.trace import TracerProvider

import otel_analytics as oa
from bench import servers
from bench.bench_loss import rss_mb
from bench.common import QUICK, header, judge
from otel_analytics.exporters import TRACKER_QUEUE_SIZE, TRACKER_SPAN_QUEUE_SIZE

TOTAL = 20_000 if QUICK else 1_000_000
BOUND_MB = TRACKER_QUEUE_SIZE * 2 / 1024
"""What the configured queues may hold: 32,768 encoded calls at 2 KiB each at most (~0.6 KB
measured), the 8,192 spans waiting to be encoded included."""


def main() -> int:
    header("memory with the tracker down", __doc__ or "")
    down = f"http://127.0.0.1:{servers.free_port()}"  # nothing listens there
    handle = oa.configure(tracer_provider=TracerProvider(), exporters="tracker", tracker_url=down, retry_budget_s=2)
    for _ in range(20_000):  # warm-up: prices loaded, queue filled once, allocator settled
        oa.track_interaction(session_id="warm", user_id="u", model_name="gpt-4o-mini", prompt_tokens=1)
    warm = peak = rss_mb()
    started = time.perf_counter()
    for n in range(TOTAL):
        oa.track_interaction(
            session_id=f"conv-{n % 1000}",
            user_id=f"user-{n % 50}",
            model_name="gpt-4o-mini",
            prompt_tokens=1200,
            completion_tokens=300,
            compute_duration_ms=900,
            metadata={"endpoint": "/api/messages"},
        )
        if n % 50_000 == 49_999:
            peak = max(peak, rss_mb())
    elapsed = time.perf_counter() - started
    peak = max(peak, rss_mb())
    handle.force_flush(timeout=5)
    stats = handle.stats()["tracker"]
    handle.shutdown(timeout=5)
    print(f"{TOTAL:,} interactions in {elapsed:.0f} s ({TOTAL / elapsed:,.0f}/s); exporter counters: {stats}")
    print(f"RSS warm {warm:.0f} MB, peak {peak:.0f} MB\n")
    ok = judge(
        "7",
        "RSS growth with the tracker down, within the queues' bound",
        peak - warm,
        None,
        BOUND_MB,
        unit="MB",
        note=f" [the bound: {TRACKER_QUEUE_SIZE:,} queued calls and {TRACKER_SPAN_QUEUE_SIZE:,} spans; ~20 MB full]",
    )
    return 0 if QUICK or ok else 1


if __name__ == "__main__":
    sys.exit(main())
