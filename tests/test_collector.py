"""The Collector configurations: wired, consistent with the package, documented; and the tracker route."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk.trace import TracerProvider

import otel_analytics as oa
from otel_analytics import attributes as attrs
from tests.conftest import LocalTracker
from tests.test_tracker_pipeline import conversation, state

COLLECTOR = Path(__file__).resolve().parent.parent / "collector"
CONFIGS = sorted(COLLECTOR.glob("*.yaml"))
KINDS = ("receivers", "processors", "connectors", "exporters")
# Component types of otelcol-contrib v0.144+ that these configs may use.
KNOWN = {
    "receivers": {"otlp"},
    "processors": {
        "memory_limiter",
        "batch",
        "attributes",
        "probabilistic_sampler",
        "filter",
        "transform",
        "tail_sampling",
    },
    "connectors": {"routing", "forward"},
    "exporters": {"otlp_http", "otlp_grpc", "loadbalancing", "debug", "prometheus"},
    "extensions": {"health_check", "file_storage"},
}
PULLED = {"prometheus"}
"""Exporters scraped rather than pushing: nothing to retry or queue."""
ENV = re.compile(r"\$\{env:([A-Z0-9_]+)(?::-[^}]*)?\}")


def load(path: Path) -> dict[str, Any]:
    config = yaml.safe_load(path.read_text())
    assert isinstance(config, dict)
    return config


def kind_of(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def test_there_are_a_gateway_and_an_agent() -> None:
    assert [p.name for p in CONFIGS] == ["agent.yaml", "gateway.yaml"]
    for path in CONFIGS:
        assert path.read_text().startswith("# otel-analytics"), "each config opens with when to use it"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_pipeline_is_wired_and_every_component_defined_and_used(path: Path) -> None:
    config = load(path)
    pipelines = config["service"]["pipelines"]
    used: dict[str, set[str]] = {kind: set() for kind in KINDS}
    connector_as_exporter, connector_as_receiver = set(), set()
    for name, pipeline in pipelines.items():
        assert name.split("/")[0] in ("traces", "metrics")
        assert pipeline.get("receivers"), f"{name} has no receiver"
        assert pipeline.get("exporters"), f"{name} has no exporter"
        processors = pipeline.get("processors", [])
        assert processors and processors[0] == "memory_limiter", f"{name}: memory_limiter must come first"
        for component in pipeline["receivers"]:
            if component in config.get("connectors", {}):
                connector_as_receiver.add(component)
            else:
                used["receivers"].add(component)
        for component in pipeline["exporters"]:
            if component in config.get("connectors", {}):
                connector_as_exporter.add(component)
            else:
                used["exporters"].add(component)
        used["processors"].update(processors)
    used["connectors"] = connector_as_exporter | connector_as_receiver
    assert connector_as_exporter == connector_as_receiver, "a connector must be both exporter and receiver"
    for kind in KINDS:
        defined = set(config.get(kind) or {})
        assert used[kind] <= defined, f"{path.name}: {kind} used but not defined: {used[kind] - defined}"
        assert defined <= used[kind], f"{path.name}: {kind} defined but never used: {defined - used[kind]}"
        for component in defined:
            assert kind_of(component) in KNOWN[kind], f"{path.name}: unknown {kind} type {component}"
    extensions = set(config.get("extensions") or {})
    assert extensions == set(config["service"].get("extensions", [])), "extensions defined == enabled"
    for extension in extensions:
        assert kind_of(extension) in KNOWN["extensions"]
    assert any(kind_of(e) == "health_check" for e in extensions)
    for name, exporter in (config.get("exporters") or {}).items():
        if kind_of(name) in PULLED:
            continue
        settings = exporter.get("protocol", {}).get("otlp", exporter)
        assert settings["retry_on_failure"]["enabled"] is True, f"{name} retries"
        assert settings["sending_queue"]["enabled"] is True, f"{name} queues"
        storage = settings["sending_queue"].get("storage")
        if storage is not None:
            assert storage in extensions, f"{name} queues on an extension that is not enabled"
    # Routing tables only name pipelines that exist and take the connector as a receiver.
    for connector_id, connector in (config.get("connectors") or {}).items():
        targets = set(connector.get("default_pipelines", []))
        for route in connector.get("table", []):
            targets.update(route["pipelines"])
        for target in targets:
            assert target in pipelines and connector_id in pipelines[target]["receivers"]


def test_gateway_routes_analytics_to_the_tracker_and_redacts_for_the_backend() -> None:
    config = load(COLLECTOR / "gateway.yaml")
    (route,) = config["connectors"]["routing"]["table"]
    assert route["context"] == "span"
    # The condition names the attributes the package really writes.
    assert f'attributes["{attrs.INTERACTION_TYPE}"] != nil' in route["condition"]
    assert f'attributes["{attrs.SESSION_EVENT}"] != nil' in route["condition"]
    assert set(route["pipelines"]) == {"traces/tracker", "traces/backend"}
    assert config["connectors"]["routing"]["default_pipelines"] == ["traces/backend"]
    tracker = config["exporters"]["otlp_http/tracker"]
    assert tracker["traces_endpoint"] == "${env:ANALYTICS_TRACKER_URL}/v1/traces"
    assert tracker["sending_queue"]["storage"].startswith("file_storage")
    backend = config["service"]["pipelines"]["traces/backend"]["processors"]
    assert "attributes/redact" in backend
    assert "attributes/redact" not in config["service"]["pipelines"]["traces/tracker"]["processors"]
    deleted = {a.get("key") for a in config["processors"]["attributes/redact"]["actions"] if a["action"] == "delete"}
    assert {attrs.GEN_AI_INPUT_MESSAGES, attrs.GEN_AI_OUTPUT_MESSAGES, attrs.METADATA} <= deleted
    patterns = [a["pattern"] for a in config["processors"]["attributes/redact"]["actions"] if "pattern" in a]
    for header in (
        "http.request.header.authorization",
        "http.request.header.cookie",
        "http.response.header.set-cookie",
        "http.request.header.x-api-key",
    ):
        assert any(re.match(p, header) for p in patterns), header
    hashed = {a["key"] for a in config["processors"]["attributes/redact"]["actions"] if a["action"] == "hash"}
    assert attrs.USER_ID in hashed


def test_the_metrics_pipelines() -> None:
    """OTLP in; the gateway sends them to the OTLP backend and a Prometheus endpoint (never to the
    tracker, which stores spans), user.id hashed; the agent balances them by stream."""
    gateway = load(COLLECTOR / "gateway.yaml")
    pipeline = gateway["service"]["pipelines"]["metrics"]
    assert pipeline["receivers"] == ["otlp"]
    assert set(pipeline["exporters"]) == {"otlp_http/backend", "prometheus"}
    assert "attributes/redact" in pipeline["processors"]
    assert gateway["exporters"]["prometheus"]["endpoint"].startswith("${env:GATEWAY_PROMETHEUS_ENDPOINT")
    assert "traces_endpoint" not in gateway["exporters"]["otlp_http/backend"]  # /v1/metrics is appended
    agent = load(COLLECTOR / "agent.yaml")
    (exporter,) = agent["service"]["pipelines"]["metrics"]["exporters"]
    assert agent["exporters"][exporter]["routing_key"] == "streamID"


def test_agent_balances_by_trace_id() -> None:
    config = load(COLLECTOR / "agent.yaml")
    balancer = config["exporters"]["loadbalancing"]
    assert balancer["routing_key"] == "traceID"
    assert "dns" in balancer["resolver"] or "static" in balancer["resolver"]


def test_every_environment_variable_is_documented() -> None:
    readme = (COLLECTOR / "README.md").read_text()
    for path in CONFIGS:
        names = set(ENV.findall(path.read_text()))
        assert names, path.name
        for name in names:
            assert f"| `{name}` |" in readme, f"{name} ({path.name}) is not in collector/README.md"
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", readme, re.MULTILINE))
    used = {name for path in CONFIGS for name in ENV.findall(path.read_text())}
    assert documented == used, f"documented but unused: {documented - used}"


def test_the_tracker_route_as_the_gateway_runs_it(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    """OTLP/HTTP protobuf, gzip, bearer token: the gateway's otlp_http/tracker exporter, played by the
    package's own OTLP exporter; the tracker must end up exactly as the tracker exporter leaves it."""
    via_otlp = LocalTracker(str(tmp_path / "otlp.db"), token="gateway-token")
    via_exporter = LocalTracker(str(tmp_path / "direct.db"))
    try:
        clean_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{via_otlp.url}/v1/traces")
        clean_env.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
        clean_env.setenv("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer%20gateway-token")
        provider = TracerProvider()
        handle = oa.configure(tracer_provider=provider, exporters="otlp,tracker", tracker_url=via_exporter.url)
        try:
            conversation()
            assert handle.force_flush(timeout=10)
        finally:
            handle.shutdown()
        via_otlp.client.headers["Authorization"] = "Bearer gateway-token"
        assert state(via_otlp) == state(via_exporter)
        assert state(via_otlp)["conv-e2e"]["total_interactions"] == 6
    finally:
        via_otlp.close()
        via_exporter.close()


def test_switching_exporters_by_environment_only() -> None:
    import subprocess
    import sys

    from tests.helpers import clean_environ

    script = COLLECTOR.parent / "examples" / "switch_exporters.py"
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=clean_environ(),
        timeout=180,
        cwd=script.parent,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    outcomes = [line.strip() for line in lines if line.strip().startswith("->")]
    assert outcomes[0] == "-> 19 spans printed, 0 sessions and 0 interactions in the tracker"  # console
    for outcome in outcomes[1:]:  # otlp, tracker, both (stored once each)
        assert outcome == "-> 0 spans printed, 2 sessions and 13 interactions in the tracker"
