from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.sdk.trace import ReadableSpan

import otel_analytics as oa
from otel_analytics.testing import CaptureAnalytics

CONV1_TRACE = "13b3ce507342d66227f23126117dec32"
CONV1_ROOT = "f629897a679b472f"


def test_session_records_start_end_and_root(capture_analytics: CaptureAnalytics) -> None:
    with oa.session("conv-1", user_id="u1", metadata={"endpoint": "/api/convos", "Authorization": "Bearer x"}):
        with oa.interaction("chat", model="gpt-4o") as it:
            it.record_usage(prompt_tokens=12, completion_tokens=30)
    start = capture_analytics.spans(event="start")[0]
    end = capture_analytics.spans(event="end")[0]
    root = capture_analytics.spans(event="root")[0]
    chat = capture_analytics.spans(type="chat")[0]
    for span in (start, end, chat):
        assert span["trace_id"] == CONV1_TRACE
        assert span["parent_span_id"] == CONV1_ROOT
        assert span["attributes"]["session.id"] == "conv-1"
        assert span["attributes"]["user.id"] == "u1"
    assert root["trace_id"] == CONV1_TRACE
    assert root["span_id"] == CONV1_ROOT
    assert root["parent_span_id"] is None
    assert root["start_time"] == start["start_time"]
    assert root["end_time"] == end["end_time"]
    assert end["attributes"]["analytics.session.start_time"].endswith("Z")
    metadata = json.loads(start["attributes"]["analytics.metadata"])
    assert metadata == {"endpoint": "/api/convos", "Authorization": "[REDACTED]"}


def test_start_and_end_in_different_calls_with_explicit_times(capture_analytics: CaptureAnalytics) -> None:
    began = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    oa.start_session("conv-2", user_id="u2", start_time=began)
    oa.track_interaction(session_id="conv-2", user_id="u2", model_name="gpt-4o", prompt_tokens=5)
    oa.end_session("conv-2", end_time=began + timedelta(minutes=75))
    root = capture_analytics.spans(event="root")[0]
    assert root["end_time"] - root["start_time"] == 75 * 60 * 10**9
    assert root["attributes"]["analytics.session.start_time"] == "2026-11-29T10:00:00.000Z"


def test_end_without_known_start_emits_a_zero_length_root(capture_analytics: CaptureAnalytics) -> None:
    oa.end_session("started-elsewhere", user_id="u")
    root = capture_analytics.spans(event="root")[0]
    assert root["start_time"] == root["end_time"]
    assert "analytics.session.start_time" not in root["attributes"]


def test_session_binding_without_start_or_end(capture_analytics: CaptureAnalytics) -> None:
    with oa.session("conv-3", user_id="u3", start=False, end=False):
        oa.track_api_call(call_count=2)
    assert capture_analytics.spans(event="start") == []
    assert capture_analytics.spans(event="end") == []
    api = capture_analytics.spans(type="api")[0]
    assert api["attributes"]["session.id"] == "conv-3"
    assert api["attributes"]["analytics.api.call_count"] == 2


def test_invalid_session_ids_are_refused_clearly(capture_analytics: CaptureAnalytics) -> None:
    for bad in ("", "x" * 257):
        with pytest.raises(ValueError, match="session_id"):
            oa.start_session(bad)
    with pytest.raises(ValueError, match="timezone"):
        oa.start_session("ok", start_time=datetime(2026, 1, 1))


@pytest.mark.anyio
async def test_tasks_started_in_a_session_belong_to_it(capture_analytics: CaptureAnalytics) -> None:
    async def work(n: int) -> None:
        await asyncio.sleep(0)
        with oa.interaction("db", read_ops=n):
            await asyncio.sleep(0)

    with oa.session("conv-tasks", user_id="u", start=False, end=False):
        async with asyncio.TaskGroup() as group:
            for n in range(5):
                group.create_task(work(n))
        await asyncio.gather(*(work(n) for n in range(3)))
    spans = capture_analytics.spans(type="db")
    assert len(spans) == 8
    assert {s["attributes"]["session.id"] for s in spans} == {"conv-tasks"}
    # Outside the session nothing is attached any more.
    with oa.interaction("db"):
        pass
    assert "session.id" not in capture_analytics.spans(type="db")[-1]["attributes"]


def test_interaction_in_a_request_span_is_linked_both_ways(capture_analytics: CaptureAnalytics) -> None:
    tracer = capture_analytics.provider.get_tracer("app")
    with tracer.start_as_current_span("POST /api/messages") as request_span:
        with (
            oa.session("conv-link", user_id="u", start=False, end=False),
            oa.interaction("chat", model="gpt-4o"),
        ):
            pass
    request = next(s for s in capture_analytics.spans() if s["name"] == "POST /api/messages")
    chat = capture_analytics.spans(type="chat")[0]
    assert chat["trace_id"] != request["trace_id"]
    assert chat["links"] == [request["span_id"]]
    assert request["links"] == [chat["span_id"]]
    assert isinstance(request_span, ReadableSpan) and request_span.attributes is not None
    assert request_span.attributes["analytics.session.id"] == "conv-link"
    assert "session.id" not in request_span.attributes  # the request's trace is not the session's


def test_another_process_lands_in_the_same_trace(capture_analytics: CaptureAnalytics) -> None:
    script = textwrap.dedent(
        """
        import otel_analytics as oa
        handle = oa.configure(exporters="console")
        oa.track_interaction(session_id="conv-1", user_id="u1", model_name="gpt-4o", prompt_tokens=3)
        handle.shutdown()
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANALYTICS_", "OTEL_"))}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    exported = json.loads(out.stdout)
    assert exported["context"]["trace_id"] == "0x" + CONV1_TRACE
    assert exported["parent_id"] == "0x" + CONV1_ROOT
    with oa.session("conv-1", user_id="u1", start=False, end=False), oa.interaction("db"):
        pass
    assert capture_analytics.spans(type="db")[0]["trace_id"] == CONV1_TRACE


def test_trace_id_ratio_sampling_keeps_or_drops_whole_sessions(clean_env: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from otel_analytics.ids import session_trace_id

    capture = CaptureAnalytics(TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.5))))
    try:
        kept = dropped = 0
        for n in range(40):
            session_id = f"conv-{n}"
            with oa.session(session_id, user_id="u"):
                for _ in range(3):
                    oa.track_db_operation(read_ops=1)
            spans = [s for s in capture.spans() if s["attributes"].get("session.id") == session_id]
            bound = TraceIdRatioBased.get_bound_for_rate(0.5)
            expected = session_trace_id(session_id) & TraceIdRatioBased.TRACE_ID_LIMIT < bound
            assert len(spans) == (6 if expected else 0)  # start, 3 db, end, root: all or nothing
            kept += expected
            dropped += not expected
        assert kept and dropped
    finally:
        capture.close()


def test_span_ids_stay_unique_when_the_app_seeds_the_global_random(capture_analytics: CaptureAnalytics) -> None:
    import random

    ids = []
    for _ in range(2):  # two "runs" of an app that seeds random.seed(42) at start-up
        random.seed(42)
        ids.append(oa.track_api_call(session_id="conv-seeded", user_id="u"))
    assert ids[0] != ids[1]


def test_forked_workers_do_not_repeat_each_others_span_ids() -> None:
    import os

    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    from otel_analytics.runtime import PinnableIdGenerator

    generator = PinnableIdGenerator(RandomIdGenerator())
    generator.generate_span_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out without running any cleanup
        os.write(write, b"%d %d" % (generator.generate_span_id(), generator.generate_trace_id()))
        os._exit(0)
    os.close(write)
    child = os.read(read, 200).split()
    os.close(read)
    os.waitpid(pid, 0)
    assert [generator.generate_span_id(), generator.generate_trace_id()] != [int(value) for value in child]
