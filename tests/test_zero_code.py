"""``opentelemetry-instrument python app.py`` picks the package up through its configurator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import clean_environ
from tests.receivers import OtlpHttpReceiver

APP = """
import otel_analytics as oa
handle = oa.configure()  # joins the agent's provider: the same handle as the configurator's
assert handle.tracer_provider is not None
oa.track_interaction(session_id="conv-zero", user_id="u0", model_name="gpt-4o-mini",
                     prompt_tokens=100, completion_tokens=10)
with oa.session("conv-zero", user_id="u0", start=False, end=False):
    with oa.interaction("db", read_ops=2):
        pass
"""


def _instrument(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    agent = Path(sys.executable).with_name("opentelemetry-instrument")
    environ = clean_environ(**env)
    environ["PATH"] = f"{agent.parent}{os.pathsep}{environ.get('PATH', '')}"
    return subprocess.run(
        [str(agent), sys.executable, str(app)], capture_output=True, text=True, env=environ, timeout=120
    )


def test_otlp_exporter_chosen_by_otel_traces_exporter(tmp_path: Path, otlp_http_receiver: OtlpHttpReceiver) -> None:
    result = _instrument(
        tmp_path,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_http_receiver.endpoint,
        OTEL_SERVICE_NAME="zero-code-app",
    )
    assert result.returncode == 0, result.stderr
    spans = otlp_http_receiver.wait_for(2)
    names = sorted(span["name"] for span in spans)
    assert names == ["chat gpt-4o-mini", "db"]  # once each: nothing exported twice
    chat = next(span for span in spans if span["name"] == "chat gpt-4o-mini")
    assert chat["resource"]["service.name"] == "zero-code-app"
    assert chat["attributes"]["gen_ai.usage.input_tokens"] == 100
    assert chat["attributes"]["analytics.cost.micro_cents"] == round(100 * 0.015) + round(10 * 0.06)
    assert chat["trace_id"] == format(__import__("otel_analytics").session_trace_id("conv-zero"), "032x")


def test_console_exporter_and_analytics_exporters_joining(tmp_path: Path) -> None:
    result = _instrument(
        tmp_path,
        OTEL_TRACES_EXPORTER="console",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
    )
    assert result.returncode == 0, result.stderr
    decoder = json.JSONDecoder()
    text, spans = result.stdout.strip(), []
    while text:
        span, end = decoder.raw_decode(text)
        spans.append(span)
        text = text[end:].strip()
    assert sorted(span["name"] for span in spans) == ["chat gpt-4o-mini", "db"]


def test_analytics_tracker_exporter_by_name(tmp_path: Path) -> None:
    from tests.fake_tracker import FakeTracker

    fake = FakeTracker()
    try:
        result = _instrument(
            tmp_path,
            OTEL_TRACES_EXPORTER="analytics_tracker",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
            ANALYTICS_TRACKER_URL=fake.url,
        )
        assert result.returncode == 0, result.stderr
        assert sorted(i["type"] for i in fake.interactions) == ["chat", "db"]
        assert list(fake.sessions) == ["conv-zero"]
    finally:
        fake.close()


def test_metrics_go_to_the_agents_meter_provider(tmp_path: Path, otlp_http_receiver: OtlpHttpReceiver) -> None:
    """``OTEL_METRICS_EXPORTER=otlp``: the agent builds the meter provider, otel-analytics joins it,
    and the GenAI metrics reach the receiver with the app's (none here) when the process ends."""
    result = _instrument(
        tmp_path,
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_http_receiver.endpoint,
    )
    assert result.returncode == 0, result.stderr
    names = set()
    tokens = []  # cumulative: each export (the flush at exit, the provider's shutdown) has the totals
    for request in otlp_http_receiver.metric_requests:
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    names.add(metric.name)
                    if metric.name == "gen_ai.client.token.usage":
                        tokens.append(sum(p.sum for p in metric.histogram.data_points))
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration", "analytics.interactions"} <= names
    assert tokens and set(tokens) == {110}
