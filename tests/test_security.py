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
QUERY = {"api_key": "canary-query-key-9a9a", "token": "canary-query-token-8b8b", "mine": "canary-query-mine-7c7c"}
CONTENT = "canary-message-content-8e8e8e"
TRACKER_TOKEN = "canary-tracker-token-4242"
# Secrets inside metadata, nested, and in values shaped like credentials.
NESTED = {
    "request": {"headers": {"Authorization": "Bearer canary-nested-auth-1111", "X-Api-Key": "canary-nested-key-2222"}},
    "calls": [{"tool": "search", "credentials": {"password": "canary-nested-pw-3333"}}],
    "note": "the key sk-canarykey4444abcdefghij was pasted here",
    "upstream": "https://api.example.com/v1?access_token=canary-nested-url-5555",
    "accessToken": "canary-nested-camel-6666",
}
NESTED_SECRETS = [
    "canary-nested-auth-1111",
    "canary-nested-key-2222",
    "canary-nested-pw-3333",
    "sk-canarykey4444abcdefghij",
    "canary-nested-url-5555",
    "canary-nested-camel-6666",
]


def test_canary_secrets_never_reach_spans_logs_the_database_or_the_read_api(
    tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
    otlp_http_receiver: OtlpHttpReceiver,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    tracker = LocalTracker(str(tmp_path / "secrets.db"), token=TRACKER_TOKEN)
    clean_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{otlp_http_receiver.endpoint}/v1/traces")
    clean_env.setenv("ANALYTICS_TRACKER_TOKEN", TRACKER_TOKEN)
    clean_env.setenv("ANALYTICS_REDACT_QUERY_PARAMS", "mine")
    # The app asks contrib's instrumentation to capture every request header: the credentials' stay masked.
    clean_env.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ".*")
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    caplog.set_level(logging.DEBUG)
    handle = oa.configure(tracer_provider=provider, exporters="tracker,otlp,console", tracker_url=tracker.url)
    server = ServerThread(oa.AnalyticsMiddleware(build()))  # the middleware adds the server span
    admin = {"Authorization": f"Bearer {TRACKER_TOKEN}"}
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
                with client.stream("POST", "/api/messages", params={"shape": shape, **QUERY}, json=body) as response:
                    response.read()
            client.delete("/api/convos/conv-from-response")
        oa.track_interaction(
            session_id="conv-from-response",
            user_id="u",
            model_name="gpt-4o",
            prompt_tokens=1,
            metadata={"Authorization": CANARIES["authorization"], "note": "ok", **NESTED},
        )
        oa.start_session("conv-nested", user_id="u", metadata=NESTED)
        with oa.interaction("db", metadata=NESTED, session_id="conv-nested", user_id="u"):
            pass
        assert handle.force_flush(timeout=10)
        otlp_http_receiver.wait_for(8)
        # A client other than this package writes nested secrets straight to the tracker, and OTLP
        # ingest receives them from another instrumentation.
        direct = {
            "session_id": "conv-direct",
            "user_id": "u",
            "type": "api",
            "timestamp": "2026-11-29T10:00:00Z",
            "metadata": NESTED,
        }
        assert tracker.client.post("/v1/track/interaction", json=direct, headers=admin).status_code == 202
        assert (
            tracker.client.post(
                "/v1/track/interaction/batch", json={"interactions": [direct]}, headers=admin
            ).status_code
            == 202
        )
        ingest_nested_over_otlp(tracker, admin)
        read_api = [
            tracker.client.get(path, headers=admin).text
            for path in (
                "/v1/sessions",
                "/v1/sessions/conv-from-response",
                "/v1/sessions/conv-from-response/interactions",
                "/v1/sessions/conv-nested",
                "/v1/sessions/conv-nested/interactions",
                "/v1/sessions/conv-direct/interactions",
                "/v1/sessions/conv-otlp-nested/interactions",
                "/v1/stats/summary",
            )
        ]
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
        # httpx and httpcore log the test's own client requests, query included: not our output.
        "logs": "\n".join(
            r.getMessage() + repr(r.args) for r in caplog.records if r.name.split(".")[0] not in ("httpx", "httpcore")
        ),
        "stdout+stderr": "".join(capfd.readouterr()),
        "database": b"".join(p.read_bytes() for p in tmp_path.glob("secrets.db*")).decode("latin-1"),
        "read API": "\n".join(read_api),
    }
    assert len(memory.get_finished_spans()) >= 8
    assert "conv-from-response" in outputs["database"]  # the pipeline did run end to end
    assert "conv-otlp-nested" in outputs["read API"] and "conv-direct" in outputs["read API"]
    targets = [
        str((s.attributes or {}).get("http.url")) for s in memory.get_finished_spans() if s.kind.name == "SERVER"
    ]
    assert any("api_key=REDACTED&token=REDACTED&mine=REDACTED" in target for target in targets), targets
    assert "[REDACTED]" in outputs["read API"]  # what was redacted is still visible as such
    secrets = [*CANARIES.values(), *QUERY.values(), CONTENT, TRACKER_TOKEN, *NESTED_SECRETS]
    for where, text in outputs.items():
        for secret in secrets:
            assert secret.split(" ")[-1] not in text, f"{secret!r} found in {where}"


def ingest_nested_over_otlp(tracker: LocalTracker, headers: dict[str, str]) -> None:
    """Spans of another instrumentation, with nested secrets in their metadata, into OTLP ingest."""
    import json

    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    span = provider.get_tracer("another").start_span(
        "api",
        attributes={
            "analytics.interaction.type": "api",
            "session.id": "conv-otlp-nested",
            "user.id": "u",
            "analytics.metadata": json.dumps(NESTED),
        },
    )
    span.end()
    body = encode_spans(memory.get_finished_spans()).SerializeToString()
    answer = tracker.client.post(
        "/v1/traces", content=body, headers={**headers, "Content-Type": "application/x-protobuf"}
    )
    assert answer.status_code == 200, answer.text


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
