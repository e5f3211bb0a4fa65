"""A conversation is one trace in a real backend: Arize Phoenix groups traces into sessions by
``session.id``, so only the session's own spans may carry it (the requests' spans carry
``analytics.session.id`` and the links)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_analytics as oa
from tests.chat_apps import COMPLETION, build
from tests.phoenix import Phoenix
from tests.servers import ServerThread


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    server = Phoenix(tmp_path_factory.mktemp("phoenix"))
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("server_span", ["added by the middleware", "the app's own instrumentation"])
def test_a_conversation_of_three_requests_is_one_trace_of_one_session(
    phoenix: Phoenix, server_span: str, clean_env: pytest.MonkeyPatch
) -> None:
    project = f"conv-test-{uuid.uuid4().hex[:8]}"
    # The app exports everything it records (its request spans too) to Phoenix; otel-analytics
    # joins its provider.
    provider = TracerProvider(resource=Resource.create({"openinference.project.name": project}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=phoenix.traces_endpoint)))
    handle = oa.configure(tracer_provider=provider, exporters=())
    app: Any = oa.AnalyticsMiddleware(build(), server_span=True)
    if server_span == "the app's own instrumentation":
        app = OpenTelemetryMiddleware(oa.AnalyticsMiddleware(build()), tracer_provider=provider)
    server = ServerThread(app)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(3):
                body = {"conversationId": project, "model": "gpt-4o"}
                client.post("/api/messages?shape=json", json=body).raise_for_status()
    finally:
        server.close()
        handle.shutdown()
        provider.shutdown()
    usage: dict[str, int] = COMPLETION["usage"]  # type: ignore[assignment]
    prompt, completion = usage["prompt_tokens"] * 3, usage["completion_tokens"] * 3
    sessions = phoenix.sessions(project, until=lambda found: bool(found) and found[0]["tokenUsage"]["prompt"] == prompt)
    assert [(s["sessionId"], s["numTraces"]) for s in sessions] == [(project, 1)]
    assert (sessions[0]["tokenUsage"]["prompt"], sessions[0]["tokenUsage"]["completion"]) == (prompt, completion)
