"""The whole pipeline on one machine: spans → tracker exporter or OTLP → the local tracker."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

import otel_analytics as oa
from otel_analytics.exporters.tracker import TrackerSpanExporter
from otel_analytics.testing import CaptureAnalytics
from tests.conftest import LocalTracker
from tests.helpers import clean_environ

ROOT = Path(__file__).resolve().parent.parent


def conversation() -> None:
    with oa.session("conv-e2e", user_id="u1", metadata={"client": "web"}):
        with oa.interaction("chat", model="gpt-4o-mini") as it:
            it.record_usage(prompt_tokens=1200, completion_tokens=300, cache_read_tokens=200)
        with oa.interaction("chat", model="claude-3-5-haiku-20241022") as it:
            it.record_response(
                {
                    "type": "message",
                    "model": "claude-3-5-haiku-20241022",
                    "usage": {"input_tokens": 50, "output_tokens": 20},
                }
            )
        with oa.interaction("chat", model="gpt-4o"):
            pass  # no usage: tokens missing, never 0
        oa.track_db_operation(read_ops=3, write_ops=1, compute_duration_ms=12)
        oa.track_api_call(call_count=2)
        try:
            with oa.interaction("api"):
                raise TimeoutError("upstream")
        except TimeoutError:
            pass


def state(tracker: LocalTracker) -> dict[str, Any]:
    """What a reader sees: sessions and their interactions, ids and timing left out."""
    sessions = tracker.client.get("/v1/sessions").json()["data"]
    out = {}
    for session in sessions:
        rows = tracker.client.get(f"/v1/sessions/{session['id']}/interactions").json()["interactions"]
        out[session["id"]] = {
            "user_id": session["user_id"],
            "ended": session["end_time"] is not None,
            "total_interactions": session["total_interactions"],
            "total_cost": session["total_cost"],
            "interactions": sorted(
                (
                    r["type"],
                    r["status"],
                    r["model_name"],
                    r["prompt_tokens"],
                    r["completion_tokens"],
                    r["db_read_ops"],
                    r["db_write_ops"],
                    r["api_call_count"],
                    r["total_cost"]["micro_cents"],
                )
                for r in rows
            ),
        }
    return out


def test_exporter_to_the_local_tracker(local_tracker: LocalTracker) -> None:
    capture = CaptureAnalytics()
    try:
        conversation()
        spans = list(capture.finished())
    finally:
        capture.close()
    tracker = TrackerSpanExporter(url=local_tracker.url)
    assert tracker.export(spans) is SpanExportResult.SUCCESS
    tracker.shutdown()
    seen = state(local_tracker)["conv-e2e"]
    assert seen["ended"] and seen["user_id"] == "u1"
    assert seen["interactions"] == sorted(
        [
            (
                "chat",
                "completed",
                "gpt-4o-mini",
                1200,
                300,
                None,
                None,
                None,
                round(1000 * 0.015) + round(200 * 0.0075) + round(300 * 0.06),
            ),
            (
                "chat",
                "completed",
                "claude-3-5-haiku-20241022",
                50,
                20,
                None,
                None,
                None,
                round(50 * 0.08) + round(20 * 0.4),
            ),
            ("chat", "completed", "gpt-4o", None, None, None, None, None, 0),
            ("db", "completed", None, None, None, 3, 1, None, 0),
            ("api", "completed", None, None, None, None, None, 2, 0),
            ("api", "failed", None, None, None, None, None, 1, 0),
        ]
    )
    # The tracker's prices agree with the estimate on the spans, to the micro-cent.
    costs = [(s.attributes or {}).get("analytics.cost.micro_cents", 0) for s in spans]
    estimates = sum(cost for cost in costs if isinstance(cost, int))
    assert seen["total_cost"]["micro_cents"] == estimates == 35 + 12
    detail = local_tracker.client.get("/v1/sessions/conv-e2e").json()
    assert detail["metadata"] == {"client": "web"}
    rows = local_tracker.client.get("/v1/sessions/conv-e2e/interactions", params={"type": "chat"}).json()
    missing = next(r for r in rows["interactions"] if r["model_name"] == "gpt-4o")
    assert missing["metadata"]["usage"] == "missing"
    assert all(len(r["metadata"]["span_id"]) == 16 for r in rows["interactions"])


class LoseFirstAnswers(httpx.BaseTransport):
    """Forwards requests to the real tracker, but loses the answer to the first N interaction requests."""

    def __init__(self, lose: int) -> None:
        self._inner = httpx.HTTPTransport()
        self.lose = lose

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if "/interaction" in request.url.path and self.lose > 0:
            self.lose -= 1
            response.read()
            raise httpx.ReadTimeout("answer lost", request=request)
        return response

    def close(self) -> None:
        self._inner.close()


@pytest.mark.parametrize("batch", [True, False])
def test_no_duplicates_after_a_retried_request(local_tracker: LocalTracker, batch: bool) -> None:
    capture = CaptureAnalytics()
    try:
        for n in range(5):
            oa.track_interaction(session_id="conv-retry", user_id="u", model_name="gpt-4o", prompt_tokens=n + 1)
        spans = list(capture.finished())
    finally:
        capture.close()
    tracker = TrackerSpanExporter(url=local_tracker.url, transport=LoseFirstAnswers(2), retry_budget_s=10)
    tracker._batch_supported = batch
    assert tracker.export(spans) is SpanExportResult.SUCCESS
    assert tracker.stats.retried == 2
    tracker.shutdown()
    assert local_tracker.rows("SELECT COUNT(*) FROM interactions") == [(5,)]
    session = local_tracker.client.get("/v1/sessions/conv-retry").json()
    assert session["total_interactions"] == 5


def otlp_request(spans: Any) -> bytes:
    data: bytes = encode_spans(spans).SerializeToString()
    return data


def test_otlp_ingest_matches_the_tracker_exporter(local_tracker: LocalTracker, tmp_path: Path) -> None:
    capture = CaptureAnalytics()
    try:
        conversation()
        spans = list(capture.finished())
    finally:
        capture.close()
    other = LocalTracker(str(tmp_path / "via-exporter.db"))
    try:
        exporter = TrackerSpanExporter(url=other.url)
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        exporter.shutdown()
        answer = local_tracker.client.post(
            "/v1/traces", content=otlp_request(spans), headers={"Content-Type": "application/x-protobuf"}
        )
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/x-protobuf"
        assert state(local_tracker) == state(other)
    finally:
        other.close()
    # Sent again (a Collector retrying): nothing is counted twice.
    local_tracker.client.post(
        "/v1/traces", content=otlp_request(spans), headers={"Content-Type": "application/x-protobuf"}
    )
    assert local_tracker.rows("SELECT COUNT(*) FROM interactions") == [(6,)]


def test_otlp_json_gzip_and_a_span_out_of_the_contracts_time_range(local_tracker: LocalTracker) -> None:
    capture = CaptureAnalytics()
    try:
        oa.track_api_call(session_id="conv-json", user_id="u")
        oa.track_db_operation(session_id="conv-json", user_id="u", compute_duration_ms=3)  # timed to 1970 below
        with capture.provider.get_tracer("app").start_as_current_span("GET /"):
            pass  # not an analytics span: ignored, not rejected
        spans = list(capture.finished())
    finally:
        capture.close()
    document = json.loads(json_format.MessageToJson(encode_spans(spans)))
    for resource in document["resourceSpans"]:  # OTLP/JSON writes ids as hex
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        import base64

                        span[key] = base64.b64decode(span[key]).hex()
                if span["name"] == "db":
                    span["startTimeUnixNano"] = "0"  # 1970: out of the contract's range
                    span["endTimeUnixNano"] = "3000000"
    answer = local_tracker.client.post(
        "/v1/traces",
        content=gzip.compress(json.dumps(document).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert answer.status_code == 200
    assert "partialSuccess" not in answer.json()  # nothing rejected
    # Kept, timed to when it arrived (the tracker would refuse 1970), its duration kept.
    rows = local_tracker.rows("SELECT type, timestamp >= '2026', duration_ms FROM interactions ORDER BY type")
    assert rows == [("api", 1, 0.0), ("db", 1, 3.0)]


def test_otlp_partial_success_says_what_was_rejected() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    from otel_analytics.tracker.otlp import response_body

    body, media = response_body(2, "Invalid timestamp", as_json=True)
    assert media == "application/json"
    assert json.loads(body) == {"partialSuccess": {"rejectedSpans": "2", "errorMessage": "Invalid timestamp"}}
    body, media = response_body(0, "", as_json=False)
    assert media == "application/x-protobuf" and body == ExportTraceServiceResponse().SerializeToString()


def test_otlp_ingest_refuses_bad_bodies_with_contract_errors(local_tracker: LocalTracker) -> None:
    c = local_tracker.client
    cases = [
        (b"\xff\x00garbage", {"Content-Type": "application/x-protobuf"}, 400),
        (b"{not json", {"Content-Type": "application/json"}, 400),
        (b"plain", {"Content-Type": "text/plain"}, 415),
        (b"notgzip", {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}, 400),
        (
            gzip.compress(b"\x00" * (20 << 20)),
            {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
            413,
        ),
    ]
    for body, headers, status in cases:
        answer = c.post("/v1/traces", content=body, headers=headers)
        assert answer.status_code == status, (body[:10], answer.text)
        assert answer.json()["error"] in ("invalid_request", "payload_too_large")


def test_report_and_health_commands(local_tracker: LocalTracker) -> None:
    handle = oa.configure(tracer_provider=TracerProvider(), exporters="tracker", tracker_url=local_tracker.url)
    try:
        conversation()
        assert handle.force_flush(timeout=10)
    finally:
        handle.shutdown()
    cli = [sys.executable, "-m", "otel_analytics.cli"]
    report = subprocess.run(
        [*cli, "report", "--url", local_tracker.url], capture_output=True, text=True, env=clean_environ(), timeout=60
    )
    assert report.returncode == 0, report.stderr
    assert "1 sessions, 6 interactions, 1 users, total cost $0.00047" in report.stdout  # to the micro-cent
    assert "conv-e2e" in report.stdout
    assert "gpt-4o-mini" in report.stdout
    detail = subprocess.run(
        [*cli, "report", "--url", local_tracker.url, "--session", "conv-e2e"],
        capture_output=True,
        text=True,
        env=clean_environ(),
        timeout=60,
    )
    assert detail.returncode == 0, detail.stderr
    assert "3 reads, 1 writes" in detail.stdout
    assert "failed" in detail.stdout
    health = subprocess.run(
        [*cli, "health", "--url", local_tracker.url], capture_output=True, text=True, env=clean_environ(), timeout=60
    )
    assert (health.returncode, health.stdout.strip()) == (0, "ok")


def test_make_demo_runs_the_main_job() -> None:
    demo = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        env=clean_environ(),
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    # alice: 3 messages (3 db + 3 captured calls) and a relayed answer; bob: 2 messages and one.
    assert "2 sessions, 12 interactions, 2 users" in demo.stdout
    assert "events (streamed)" in demo.stdout
    report = demo.stdout.split("$ otel-analytics report", 1)[1]
    for model in ("gpt-4o-2024-08-06", "claude-3-5-haiku-20241022", "gpt-4o-mini"):
        assert model in report  # tokens and cost from the captured calls, per model
    assert "By provider" in report and "anthropic" in report and "openai" in report
