"""Secrets never recorded; tokens compared in constant time; user-scoped reads; loopback by default."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_analytics as oa
from otel_analytics.cli import build_parser
from tests.chat_apps import build
from tests.conftest import LocalTracker
from tests.receivers import OtlpHttpReceiver
from tests.servers import ServerThread

CANARIES = {
    "authorization": "Bearer canary-auth-7f3a9c",
    "cookie": "session=canary-cookie-51be0e",
    "x-api-key": "canary-apikey-c0ffee",
    "proxy-authorization": "Basic canary-proxy-d00d",
}
CONTENT = "canary-message-content-8e8e8e"
TRACKER_TOKEN = "canary-tracker-token-4242"


def test_canary_secrets_never_reach_spans_logs_or_the_database(
    tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
    otlp_http_receiver: OtlpHttpReceiver,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    tracker = LocalTracker(str(tmp_path / "secrets.db"), token=TRACKER_TOKEN)
    clean_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{otlp_http_receiver.endpoint}/v1/traces")
    clean_env.setenv("ANALYTICS_TRACKER_TOKEN", TRACKER_TOKEN)
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    caplog.set_level(logging.DEBUG)
    handle = oa.configure(tracer_provider=provider, exporters="tracker,otlp,console", tracker_url=tracker.url)
    server = ServerThread(oa.AnalyticsMiddleware(build()))
    try:
        with httpx.Client(base_url=server.url, headers=CANARIES, timeout=10) as client:
            client.post("/api/convos")
            for shape in ("json", "sse"):
                body = {
                    "conversationId": "conv-from-response",
                    "model": "gpt-4o",
                    "messages": [{"role": "user", "content": CONTENT}],
                    "api_key": CANARIES["x-api-key"],
                }
                with client.stream("POST", f"/api/messages?shape={shape}", json=body) as response:
                    response.read()
            client.delete("/api/convos/conv-from-response")
        oa.track_interaction(
            session_id="conv-from-response",
            user_id="u",
            model_name="gpt-4o",
            prompt_tokens=1,
            metadata={"Authorization": CANARIES["authorization"], "note": "ok"},
        )
        assert handle.force_flush(timeout=10)
        otlp_http_receiver.wait_for(6)
    finally:
        server.close()
        handle.shutdown()
        tracker.close()
    outputs = {
        "spans": repr(
            [
                (s.name, dict(s.attributes or {}), s.events, s.links, s.resource.attributes)
                for s in memory.get_finished_spans()
            ]
        ),
        "otlp": repr(otlp_http_receiver.spans),
        "logs": "\n".join(r.getMessage() + repr(r.args) for r in caplog.records),
        "stdout+stderr": "".join(capfd.readouterr()),
        "database": b"".join(p.read_bytes() for p in tmp_path.glob("secrets.db*")).decode("latin-1"),
    }
    assert len(memory.get_finished_spans()) >= 6
    assert "conv-from-response" in outputs["database"]  # the pipeline did run end to end
    for where, text in outputs.items():
        for secret in [*CANARIES.values(), CONTENT, TRACKER_TOKEN]:
            assert secret.split(" ")[-1] not in text, f"{secret!r} found in {where}"


def test_content_is_recorded_only_when_asked(clean_env: pytest.MonkeyPatch) -> None:
    from otel_analytics.testing import CaptureAnalytics

    for enabled in (False, True):
        capture = CaptureAnalytics(capture_content=enabled)
        try:

            @oa.interaction("chat", model="gpt-4o")
            def reply(messages: list[dict[str, str]]) -> dict[str, Any]:
                return {"choices": [{"message": {"role": "assistant", "content": "answer"}}]}

            reply(messages=[{"role": "user", "content": CONTENT}])
            text = repr(capture.spans())
            assert (CONTENT in text) is enabled
        finally:
            capture.close()


def test_tokens_are_compared_in_constant_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    tracker = LocalTracker(str(tmp_path / "t.db"), token="admin-secret", user_tokens={"alice-secret": "alice"})
    try:
        assert tracker.client.get("/v1/sessions", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert tracker.client.get("/v1/sessions", headers={"Authorization": "Bearer admin-secret"}).status_code == 200
    finally:
        tracker.close()
    # Every configured token was compared, with compare_digest, for each request.
    assert {b for _, b in compared} == {b"admin-secret", b"alice-secret"}
    assert len(compared) == 4


def test_user_scoped_tokens_on_every_read_route(tmp_path: Path) -> None:
    tracker = LocalTracker(str(tmp_path / "s.db"), token="admin", user_tokens={"bob-token": "bob"})
    try:
        admin = {"Authorization": "Bearer admin"}
        bob = {"Authorization": "Bearer bob-token"}
        for user in ("alice", "bob"):
            body = {
                "session_id": f"conv-{user}",
                "user_id": user,
                "type": "chat",
                "timestamp": "2026-11-29T10:00:00Z",
                "model_name": "gpt-4o",
                "prompt_tokens": 1000,
            }
            assert tracker.client.post("/v1/track/interaction", json=body, headers=admin).status_code == 202
        c = tracker.client
        listed = c.get("/v1/sessions", headers=bob, params={"user_id": "alice"}).json()["data"]
        assert [s["user_id"] for s in listed] == ["bob"]
        assert c.get("/v1/sessions/conv-alice", headers=bob).status_code == 404
        assert c.get("/v1/sessions/conv-alice/interactions", headers=bob).status_code == 404
        summary = c.get("/v1/stats/summary", headers=bob, params={"user_id": "alice"}).json()
        assert summary["total_interactions"] == 1 and summary["unique_users"] == 1
        daily = c.get(
            "/v1/stats/daily",
            headers=bob,
            params={"start_date": "2026-11-01", "end_date": "2026-11-30", "user_id": "alice"},
        ).json()
        assert sum(d["interactions_count"] for d in daily["daily_stats"]) == 1
        assert [u["user_id"] for u in c.get("/v1/stats/by-user", headers=bob).json()["users"]] == ["bob"]
        assert c.post("/v1/traces", headers=bob, content=b"").status_code == 401  # read-only token
    finally:
        tracker.close()


def test_the_tracker_listens_on_loopback_by_default() -> None:
    args = build_parser().parse_args(["tracker", "serve"])
    assert args.host == "127.0.0.1"
