"""The GenAI metrics: from every way in (the middleware under a real server, a captured SDK call,
decorators, ``track_*``), equal to what the spans say, with the conventions' names, units and
buckets, no high-cardinality attribute unless asked for, exported by configuration (OTLP to a
real receiver, Prometheus scraped over HTTP), and leaving the spans as they were."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

import otel_analytics as oa
from examples.fake_llm import COMPLETION_TOKENS, create_app, prompt_tokens
from otel_analytics import metrics as genai_metrics
from otel_analytics.asgi import AnalyticsMiddleware
from otel_analytics.errors import ConfigurationError
from otel_analytics.testing import CaptureAnalytics
from tests.chat_apps import build
from tests.helpers import free_port, run_python
from tests.receivers import OtlpHttpReceiver
from tests.servers import ServerThread

TOKEN_BOUNDS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
SECOND_BOUNDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
MESSAGES: Any = [{"role": "user", "content": "Plan a weekend in Paris"}]


def points(capture: CaptureAnalytics, name: str, **match: Any) -> list[dict[str, Any]]:
    found = capture.metrics().get(name, [])
    return [p for p in found if all(p["attributes"].get(k) == v for k, v in match.items())]


def total(capture: CaptureAnalytics, name: str, field: str = "sum", **match: Any) -> float:
    return float(sum(p[field] if field in p else p["value"] for p in points(capture, name, **match)))


def chat_spans(capture: CaptureAnalytics) -> list[dict[str, Any]]:
    return [s["attributes"] for s in capture.spans(type="chat")]


def wait_for_chats(capture: CaptureAnalytics, count: int) -> list[dict[str, Any]]:
    for _ in range(500):
        found = chat_spans(capture)
        if len(found) >= count:
            return found
        time.sleep(0.01)
    return chat_spans(capture)


def test_the_middleware_under_a_real_server(capture_analytics: CaptureAnalytics) -> None:
    server = ServerThread(AnalyticsMiddleware(build(delay=0.01)))
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            body = {"conversationId": "conv-m", "model": "gpt-4o-mini"}
            client.post("/api/messages?shape=json", json=body, headers={"x-user-id": "alice"})
            with client.stream("POST", "/api/messages?shape=sse", json={**body, "stream": True}) as answer:
                events = [line for line in answer.iter_lines() if line.startswith("data:")]
            client.post("/api/messages?shape=error", json=body)
    finally:
        server.close()
    spans = wait_for_chats(capture_analytics, 3)
    assert total(capture_analytics, "gen_ai.client.token.usage", **{"gen_ai.token.type": "input"}) == sum(
        s.get("gen_ai.usage.input_tokens", 0) for s in spans
    )
    assert total(capture_analytics, "gen_ai.client.token.usage", **{"gen_ai.token.type": "output"}) == sum(
        s.get("gen_ai.usage.output_tokens", 0) for s in spans
    )
    assert total(capture_analytics, "gen_ai.client.operation.duration", "count") == 3
    (failed,) = points(capture_analytics, "gen_ai.client.operation.duration", **{"error.type": "429"})
    assert failed["count"] == 1
    # The stream: its time to first chunk (also on its span), one time per chunk after the first.
    (streamed,) = [s for s in spans if "gen_ai.response.time_to_first_chunk" in s]
    (first,) = points(capture_analytics, "gen_ai.client.operation.time_to_first_chunk")
    assert first["count"] == 1 and first["sum"] == pytest.approx(streamed["gen_ai.response.time_to_first_chunk"])
    (per_chunk,) = points(capture_analytics, "gen_ai.client.operation.time_per_output_chunk")
    assert per_chunk["count"] == len(events) - 1
    assert per_chunk["sum"] >= 0.01 * (len(events) - 2)  # the app sleeps 10 ms between chunks
    outcomes: dict[str, int] = {}
    for p in points(capture_analytics, "analytics.interactions"):
        outcome = p["attributes"]["analytics.outcome"]
        outcomes[outcome] = outcomes.get(outcome, 0) + p["value"]
    assert outcomes == {"completed": 2, "failed": 1}


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    server = ServerThread(create_app())
    try:
        yield server.url
    finally:
        server.close()


def test_a_captured_sdk_call(provider: str) -> None:
    capture = CaptureAnalytics(llm_hosts=(f"{provider}/v1",))
    client = openai.OpenAI(base_url=f"{provider}/v1", api_key="sk-test-key-0000000000", max_retries=0)
    try:
        with oa.session("conv-sdk", user_id="u1"):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            chunks = list(
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
                )
            )
        assert len(chunks) > 2
        prompt = prompt_tokens({"messages": MESSAGES})
        usage = points(capture, "gen_ai.client.token.usage", **{"gen_ai.token.type": "input"})
        assert sorted(p["sum"] for p in usage) == [prompt, prompt]
        json_call = points(capture, "gen_ai.client.token.usage", **{"gen_ai.request.model": "gpt-4o"})
        assert {p["attributes"]["gen_ai.response.model"] for p in json_call} == {"gpt-4o-2024-08-06"}
        assert {p["attributes"]["server.address"] for p in json_call} == {"127.0.0.1"}
        assert total(capture, "gen_ai.client.token.usage", **{"gen_ai.token.type": "output"}) == 2 * COMPLETION_TOKENS
        (first,) = points(capture, "gen_ai.client.operation.time_to_first_chunk")
        assert first["attributes"]["gen_ai.request.model"] == "gpt-4o-mini"
        (per_chunk,) = points(capture, "gen_ai.client.operation.time_per_output_chunk")
        assert per_chunk["count"] >= 1
        spans = chat_spans(capture)
        assert total(capture, "analytics.cost", "value") == pytest.approx(sum(s["analytics.cost.usd"] for s in spans))
    finally:
        client.close()
        capture.close()


def test_decorators_and_track_calls(capture_analytics: CaptureAnalytics) -> None:
    @oa.interaction("chat", model="gpt-4o-mini")
    def answer() -> dict[str, Any]:
        return {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 40, "completion_tokens": 7}}

    @oa.interaction("chat", model="gpt-4o")
    def stream() -> Iterator[dict[str, Any]]:
        for n in range(5):
            time.sleep(0.002)
            yield {"choices": [{"delta": {"content": f"w{n}"}}]}
        yield {"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 5}}

    with oa.session("conv-d", user_id="bob"):
        answer()
        assert len(list(stream())) == 6
        oa.track_interaction(type="chat", model_name="claude-3-5-haiku-latest", prompt_tokens=9, completion_tokens=1)
        oa.track_db_operation(read_ops=3, write_ops=1)
        oa.track_api_call(call_count=2)
        oa.track_interaction(type="cost-event", costs={"api_calls_cost_mc": 250})
    spans = chat_spans(capture_analytics)
    assert len(spans) == 3
    for token_type, key in (("input", "gen_ai.usage.input_tokens"), ("output", "gen_ai.usage.output_tokens")):
        recorded = total(capture_analytics, "gen_ai.client.token.usage", **{"gen_ai.token.type": token_type})
        assert recorded == sum(s[key] for s in spans) == (79 if token_type == "input" else 13)
    (first,) = points(capture_analytics, "gen_ai.client.operation.time_to_first_chunk")
    assert first["attributes"]["gen_ai.request.model"] == "gpt-4o"
    assert points(capture_analytics, "gen_ai.client.operation.time_per_output_chunk")[0]["count"] == 5
    kinds: dict[str, int] = {}
    for p in points(capture_analytics, "analytics.interactions"):
        kind = p["attributes"]["analytics.interaction.type"]
        kinds[kind] = kinds.get(kind, 0) + p["value"]
    assert kinds == {"chat": 3, "db": 1, "api": 1, "cost-event": 1}
    given = points(capture_analytics, "analytics.cost", **{"analytics.pricing.status": "given"})
    assert [p["value"] for p in given] == [pytest.approx(250 / 100_000)]
    priced = sum(s["analytics.cost.usd"] for s in spans)
    assert total(
        capture_analytics, "analytics.cost", "value", **{"analytics.interaction.type": "chat"}
    ) == pytest.approx(priced)


def test_the_cost_counter_equals_the_spans_series_by_series(capture_analytics: CaptureAnalytics) -> None:
    """Every interaction's cost lands in the series of its provider, models and pricing status:
    priced and unpriced chats of the same model, an unknown model, a chat and another interaction
    carrying costs of their own (micro-cents), all summed per series at the hand-on."""
    with oa.session("conv-c", user_id="u"):
        for prompt in (10, 20, 30):
            oa.track_interaction(type="chat", model_name="gpt-4o", prompt_tokens=prompt, completion_tokens=5)
        oa.track_interaction(type="chat", model_name="gpt-4o")  # no usage: no cost, same models
        oa.track_interaction(type="chat", model_name="no-such-model-x", prompt_tokens=3, completion_tokens=1)
        oa.track_interaction(type="chat", model_name="gpt-4o", prompt_tokens=1, costs={"ai_tokens_cost_mc": 700})
        # Costs given without the tokens' part: the tracker counts them, so does the counter.
        oa.track_interaction(type="chat", model_name="gpt-4o-mini", prompt_tokens=9, costs={"db_ops_cost_mc": 40})
        oa.track_interaction(type="cost-event", costs={"api_calls_cost_mc": 250, "db_ops_cost_mc": 50})
        oa.track_db_operation(read_ops=1)
    expected: dict[tuple[Any, ...], float] = {}
    for span in capture_analytics.spans():
        found = span["attributes"]
        if "analytics.interaction.type" not in found:
            continue  # the session's start and end
        parts = [value for key, value in found.items() if key.startswith("analytics.cost.") and key.endswith("_mc")]
        status = found.get("analytics.pricing.status")
        cost = found.get("analytics.cost.usd")
        if parts:
            status, cost = "given", sum(parts) / 100_000
        elif cost is not None:
            status = status or "priced"
        kind = found["analytics.interaction.type"]
        if kind != "chat" and cost is None:
            continue  # nothing to count
        key = (kind, found.get("gen_ai.request.model"), status or "no_usage")
        expected[key] = expected.get(key, 0.0) + (cost or 0.0)
    counted: dict[tuple[Any, ...], float] = {}
    for point in points(capture_analytics, "analytics.cost"):
        found = point["attributes"]
        key = (
            found["analytics.interaction.type"],
            found.get("gen_ai.request.model"),
            found["analytics.pricing.status"],
        )
        counted[key] = counted.get(key, 0.0) + point["value"]
    assert counted == pytest.approx(expected)
    assert set(counted) == {
        ("chat", "gpt-4o", "priced"),
        ("chat", "gpt-4o", "no_usage"),
        ("chat", "gpt-4o", "given"),
        ("chat", "gpt-4o-mini", "given"),
        ("chat", "no-such-model-x", "unknown_model"),
        ("cost-event", None, "given"),
    }
    assert counted[("chat", "gpt-4o", "given")] == pytest.approx(700 / 100_000)
    assert counted[("chat", "gpt-4o-mini", "given")] == pytest.approx(40 / 100_000)


def test_units_instruments_and_bucket_boundaries(capture_analytics: CaptureAnalytics) -> None:
    with oa.session("conv-u", user_id="u"):
        with oa.interaction("chat", model="gpt-4o") as it:
            it.record_usage(prompt_tokens=100, completion_tokens=10)
    found = capture_analytics.metrics()
    tokens, duration = found["gen_ai.client.token.usage"], found["gen_ai.client.operation.duration"]
    assert {p["unit"] for p in tokens} == {"{token}"} and {p["unit"] for p in duration} == {"s"}
    assert all(p["explicit_bounds"] == TOKEN_BOUNDS for p in tokens)
    assert all(p["explicit_bounds"] == SECOND_BOUNDS for p in duration)
    assert found["analytics.cost"][0]["unit"] == "USD"
    assert found["analytics.interactions"][0]["unit"] == "{interaction}"
    attributes = tokens[0]["attributes"]
    assert attributes["gen_ai.operation.name"] == "chat" and attributes["gen_ai.provider.name"] == "openai"


def _all_attribute_names(capture: CaptureAnalytics) -> set[str]:
    return {key for found in capture.metrics().values() for p in found for key in p["attributes"]}


def test_no_session_or_user_id_unless_asked_for() -> None:
    for opted_in in (False, True):
        capture = CaptureAnalytics(metrics_user_id=opted_in)
        try:
            with oa.session("conv-secret-42", user_id="alice@example.com"):
                oa.track_interaction(type="chat", model_name="gpt-4o", prompt_tokens=1, completion_tokens=1)
                oa.track_db_operation(read_ops=1)
            names = _all_attribute_names(capture)
            assert "session.id" not in names and "gen_ai.conversation.id" not in names
            assert "gen_ai.response.id" not in names
            assert ("user.id" in names) is opted_in
            values = json.dumps(capture.metrics())
            assert "conv-secret-42" not in values
        finally:
            capture.close()


def test_sampled_out_conversations_are_still_counted() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    capture = CaptureAnalytics(provider=TracerProvider(sampler=ALWAYS_OFF))
    try:
        with oa.session("conv-dropped", user_id="u"):
            oa.track_interaction(type="chat", model_name="gpt-4o", prompt_tokens=500, completion_tokens=50)
            with oa.interaction("chat", model="gpt-4o") as it:
                it.record_usage(prompt_tokens=100, completion_tokens=10)
        assert capture.spans(type="chat") == []
        assert total(capture, "gen_ai.client.token.usage", **{"gen_ai.token.type": "input"}) == 600
    finally:
        capture.close()


def test_metrics_off_leaves_the_spans_as_they_were() -> None:
    def record(**settings: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        capture = CaptureAnalytics(**settings)
        try:
            with oa.session("conv-same", user_id="u"):
                oa.track_interaction(type="chat", model_name="gpt-4o", prompt_tokens=5, completion_tokens=2)

                @oa.interaction("chat", model="gpt-4o-mini")
                def stream() -> Iterator[dict[str, Any]]:
                    yield {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}

                list(stream())
            timed = ("gen_ai.response.time_to_first_chunk", "analytics.session.start_time")
            spans = [{k: v for k, v in s["attributes"].items() if k not in timed} for s in capture.spans()]
            return spans, capture.metrics()
        finally:
            capture.close()

    on, with_metrics = record()
    off, without = record(metrics=False)
    assert on == off
    assert with_metrics and not without


@pytest.mark.parametrize("way", ["track", "context manager"])
def test_nothing_waits_beyond_its_bound(capture_analytics: CaptureAnalytics, way: str) -> None:
    """Both ways onto the queue (an interaction recorded when over, one recorded live) hand on
    past the bound, on the recording thread."""
    from otel_analytics.runtime import current

    count = genai_metrics.MAX_WAITING * 2 + 10
    recorder = current().metrics
    assert recorder is not None
    with oa.session("conv-many", user_id="u"):
        for _ in range(count):
            if way == "track":
                oa.track_db_operation(read_ops=1)
            else:
                with oa.interaction("db"):
                    pass
            assert len(recorder.waiting) <= genai_metrics.MAX_WAITING  # no collection yet
    assert total(capture_analytics, "analytics.interactions", "value", **{"analytics.interaction.type": "db"}) == count


def _metrics_in(requests: list[metrics_service_pb2.ExportMetricsServiceRequest]) -> dict[str, list[Any]]:
    """Each metric's exports, in order (the flush's, then the shutdown's: deltas, so 0 by then)."""
    out: dict[str, list[Any]] = {}
    for request in requests:
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    out.setdefault(metric.name, []).append(metric)
    return out


def test_otlp_export_to_a_real_receiver(otlp_http_receiver: OtlpHttpReceiver) -> None:
    # In a process of its own: a meter provider built here is installed globally, once.
    result = run_python(
        """
        import otel_analytics as oa
        handle = oa.configure(exporters="none", metrics_exporters="otlp")
        with oa.session("conv-otlp", user_id="u"):
            oa.track_interaction(type="chat", model_name="gpt-4o", prompt_tokens=1234, completion_tokens=56)
        assert handle.force_flush()
        handle.shutdown()
        """,
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=f"{otlp_http_receiver.endpoint}/v1/metrics",
        OTEL_METRIC_EXPORT_INTERVAL="600000",  # only the flush exports
        OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="delta",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    received = _metrics_in(otlp_http_receiver.metric_requests)
    tokens = received["gen_ai.client.token.usage"][0]
    assert tokens.unit == "{token}"
    by_type = {
        next(kv.value.string_value for kv in p.attributes if kv.key == "gen_ai.token.type"): p
        for p in tokens.histogram.data_points
    }
    assert (by_type["input"].sum, by_type["output"].sum) == (1234, 56)
    assert list(by_type["input"].explicit_bounds) == TOKEN_BOUNDS
    delta = 1  # AGGREGATION_TEMPORALITY_DELTA
    assert tokens.histogram.aggregation_temporality == delta
    cost = received["analytics.cost"][0].sum
    assert cost.aggregation_temporality == delta and cost.is_monotonic
    counted = [p.as_int for metric in received["analytics.interactions"] for p in metric.sum.data_points]
    assert sum(counted) == 1  # once, in the flush; the shutdown's delta adds nothing
    assert received["gen_ai.client.operation.duration"][0].unit == "s"


def test_a_prometheus_scrape() -> None:
    port = free_port()
    result = run_python(
        f"""
        import httpx, otel_analytics as oa
        handle = oa.configure(exporters="none", metrics_exporters="prometheus")
        with oa.session("conv-prom", user_id="u"):
            oa.track_interaction(type="chat", model_name="gpt-4o", prompt_tokens=321, completion_tokens=12)
        print(httpx.get("http://127.0.0.1:{port}/metrics", timeout=10).text)
        handle.shutdown()
        """,
        OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
        OTEL_EXPORTER_PROMETHEUS_PORT=str(port),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    scraped = result.stdout
    assert "gen_ai_client_token_usage" in scraped and "analytics_cost" in scraped
    line = next(
        line
        for line in scraped.splitlines()
        if line.startswith("gen_ai_client_token_usage") and "_sum" in line and 'gen_ai_token_type="input"' in line
    )
    assert line.endswith(" 321.0")


def test_joining_the_apps_meter_provider() -> None:
    result = run_python(
        """
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        import otel_analytics as oa
        from otel_analytics.testing import metric_points
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        handle = oa.configure(exporters="none")
        with oa.session("conv-join", user_id="u"):
            oa.track_interaction(type="chat", model_name="gpt-4o", prompt_tokens=77, completion_tokens=7)
        found = metric_points(reader.get_metrics_data())
        print(sum(p["sum"] for p in found["gen_ai.client.token.usage"]))
        print(handle.meter_provider is metrics.get_meter_provider())
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["84", "True"]


def test_metrics_exporters_give_a_provider_of_their_own_beside_the_apps(otlp_http_receiver: OtlpHttpReceiver) -> None:
    """With an app's (or the agent's) meter provider installed, ANALYTICS_METRICS_EXPORTERS still
    gives the package's metrics a provider of their own (aggregated here, the cheap path): they
    reach its exporter and not the app's readers, and the app's provider stays the global one."""
    result = run_python(
        """
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        import otel_analytics as oa
        from otel_analytics.testing import metric_points
        reader = InMemoryMetricReader()
        apps = MeterProvider(metric_readers=[reader])
        metrics.set_meter_provider(apps)
        metrics.get_meter("app").create_counter("app.requests").add(1)
        handle = oa.configure(exporters="none")
        with oa.session("conv-own", user_id="u"):
            oa.track_interaction(type="chat", model_name="gpt-4o", prompt_tokens=77, completion_tokens=7)
        assert handle.force_flush()
        print(sorted(metric_points(reader.get_metrics_data())))
        print(handle.meter_provider is apps, metrics.get_meter_provider() is apps)
        handle.shutdown()
        """,
        ANALYTICS_METRICS_EXPORTERS="otlp",
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=f"{otlp_http_receiver.endpoint}/v1/metrics",
        OTEL_METRIC_EXPORT_INTERVAL="600000",  # only the flush exports
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == ["['app.requests']", "False True"]
    received = _metrics_in(otlp_http_receiver.metric_requests)
    assert "app.requests" not in received
    tokens = received["gen_ai.client.token.usage"][0]
    assert sum(p.sum for p in tokens.histogram.data_points) == 84


def test_no_meter_provider_no_metrics(clean_env: pytest.MonkeyPatch) -> None:
    handle = oa.configure(exporters="none")
    try:
        from otel_analytics.runtime import current

        assert handle.meter_provider is None and current().metrics is None
    finally:
        handle.shutdown()


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("ANALYTICS_METRICS_EXPORTERS", "statsd", "ANALYTICS_METRICS_EXPORTERS"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "soon", "OTEL_METRIC_EXPORT_INTERVAL"),
        ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "sometimes", "TEMPORALITY_PREFERENCE"),
        ("OTEL_METRICS_EXPORTER", "statsd", "OTEL_METRICS_EXPORTER"),
        ("ANALYTICS_METRICS_USER_ID", "maybe", "ANALYTICS_METRICS_USER_ID"),
    ],
)
def test_bad_metrics_settings_are_named(clean_env: pytest.MonkeyPatch, variable: str, value: str, named: str) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=named):
        oa.configure(exporters="none")


class _Kept(MetricExporter):
    """Keeps what a reader exports (the in-memory reader's counterpart for a built provider)."""

    def __init__(self) -> None:
        super().__init__(preferred_temporality={})
        self.exported: list[Any] = []

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def _record_the_same_interactions() -> None:
    with oa.session("conv-both", user_id="u"):
        for n in range(30):
            oa.track_interaction(
                type="chat",
                model_name="gpt-4o" if n % 3 else "claude-3-5-haiku-latest",
                prompt_tokens=17 * n,
                completion_tokens=n,
                compute_duration_ms=37.5 * n,
                status="failed" if n % 7 == 0 else None,
            )

        @oa.interaction("chat", model="gpt-4o-mini")
        def stream() -> Iterator[dict[str, Any]]:
            for n in range(12):
                yield {"choices": [{"delta": {"content": f"{n}"}}]}
            yield {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 12}}

        list(stream())


def _comparable(found: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    timed = ("gen_ai.client.operation.time_to_first_chunk", "gen_ai.client.operation.time_per_output_chunk")
    out = {}
    for name, found_points in found.items():
        rows = []
        for p in found_points:
            row = {k: v for k, v in p.items() if k != "attributes"}
            if isinstance(row.get("sum"), float):  # summed in another order: equal to the last bits
                row["sum"] = float(f"{row['sum']:.12g}")
            streamed = p["attributes"].get("gen_ai.request.model") == "gpt-4o-mini"
            if name in timed or (streamed and name == "gen_ai.client.operation.duration"):
                # Measured times (the stream's): the same count, not the same seconds.
                row = {"count": row["count"], "unit": row["unit"], "explicit_bounds": row["explicit_bounds"]}
            rows.append((sorted(p["attributes"].items()), sorted(row.items())))
        out[name] = sorted(rows)
    return out


def test_the_histograms_aggregated_here_equal_the_sdks() -> None:
    """The same interactions, once through the SDK's instruments (a joined provider) and once
    through the aggregation of a provider otel-analytics builds: the same points."""
    from otel_analytics.exporters.metrics import MeterSetup, periodic_reader
    from otel_analytics.metrics import SPECS
    from otel_analytics.metrics_export import Histograms
    from otel_analytics.testing import metric_points

    joined = CaptureAnalytics()
    try:
        _record_the_same_interactions()
        through_sdk = joined.metrics()
    finally:
        joined.close()

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource

    kept = _Kept()
    histograms = Histograms(SPECS)
    resource = Resource.create({})
    reader = periodic_reader(kept, histograms, resource, export_interval_millis=math.inf)
    provider = MeterProvider(metric_readers=[reader], resource=resource, shutdown_on_exit=False)
    from otel_analytics import configuration
    from otel_analytics.metrics import metrics_for

    built = CaptureAnalytics()
    try:
        # The built provider's recorder, in place of the joined one, for the same calls.
        setup = MeterSetup(provider, owned=True, exporters=("kept",), histograms=histograms)
        from otel_analytics.runtime import current

        current().metrics = metrics_for(provider, with_user_id=False, histograms=histograms)
        assert configuration._active is built.handle
        _record_the_same_interactions()
        assert setup.provider.force_flush()
        here = metric_points(kept.exported[-1])
    finally:
        built.close()
        provider.shutdown()
    assert _comparable(here) == _comparable(through_sdk)
    assert here["gen_ai.client.operation.time_per_output_chunk"][0]["count"] == 12


@settings(deadline=None)
@given(
    st.lists(
        st.sampled_from([0.0, 0.005, 0.01, 0.0100001, 0.02, 1.28, 5.0, 81.92, 100.0]) | st.floats(0, 200), min_size=1
    )
)
def test_values_are_bucketed_as_the_sdk_buckets_them(values: list[float]) -> None:
    """Bucket i holds the values above bound i-1 up to bound i (a value on a bound is in its bucket)."""
    import bisect

    from otel_analytics.metrics import DURATION_BUCKETS
    from otel_analytics.metrics_export import _count_into

    expected = [0] * (len(DURATION_BUCKETS) + 1)
    for value in values:
        expected[bisect.bisect_left(DURATION_BUCKETS, value)] += 1
    found = [0] * (len(DURATION_BUCKETS) + 1)
    _count_into(found, DURATION_BUCKETS, values, min(values), max(values))
    assert found == expected
