"""The otlp exporter, pointed at real OTLP receivers on 127.0.0.1 by environment variables only."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider

import otel_analytics as oa
from tests.receivers import OtlpGrpcReceiver, OtlpHttpReceiver

CHAT_ATTRIBUTES = {
    "analytics.interaction.type": "chat",
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.id": "chatcmpl-9",
    "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.cache_read.input_tokens": 200,
    "gen_ai.conversation.id": "conv-otlp",
    "session.id": "conv-otlp",
    "user.id": "u-otlp",
    "analytics.usage.status": "reported",
    # (1000 * 2.5 + 200 * 1.25 + 300 * 10) * 0.1 mc
    "analytics.cost.micro_cents": 250 + 25 + 300,
    "analytics.cost.usd": 0.00575,
    "analytics.outcome": "completed",
}


def _emit() -> None:
    with oa.session("conv-otlp", user_id="u-otlp"), oa.interaction("chat", model="gpt-4o") as it:
        it.record_response(
            {
                "id": "chatcmpl-9",
                "model": "gpt-4o-2024-08-06",
                "choices": [{"finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": 1200,
                    "completion_tokens": 300,
                    "prompt_tokens_details": {"cached_tokens": 200},
                },
            }
        )
    oa.track_db_operation(session_id="conv-otlp", user_id="u-otlp", read_ops=4, write_ops=1)


def _check(spans: list[dict[str, object]]) -> None:
    by_name = {span["name"]: span for span in spans}
    assert set(by_name) == {"session start", "chat gpt-4o", "session end", "session", "db"}
    chat = by_name["chat gpt-4o"]
    attributes = chat["attributes"]
    assert isinstance(attributes, dict)
    for key, value in CHAT_ATTRIBUTES.items():
        assert attributes.get(key) == value, key
    assert str(attributes["analytics.pricing.version"]).startswith("genai-prices ")
    assert chat["parent_span_id"] == by_name["session"]["span_id"]
    assert {span["trace_id"] for span in spans} == {format(oa.session_trace_id("conv-otlp"), "032x")}
    resource = chat["resource"]
    assert isinstance(resource, dict)
    assert resource["service.name"] == "otlp-test"
    db = by_name["db"]["attributes"]
    assert isinstance(db, dict)
    assert (db["analytics.db.read_ops"], db["analytics.db.write_ops"]) == (4, 1)


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_otlp_by_environment(
    clean_env: pytest.MonkeyPatch,
    otlp_http_receiver: OtlpHttpReceiver,
    otlp_grpc_receiver: OtlpGrpcReceiver,
    protocol: str,
) -> None:
    from opentelemetry.sdk.resources import Resource

    receiver: OtlpHttpReceiver | OtlpGrpcReceiver = otlp_http_receiver
    clean_env.setenv("ANALYTICS_EXPORTERS", "otlp")
    if protocol == "grpc":
        receiver = otlp_grpc_receiver
        clean_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        clean_env.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    else:
        clean_env.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=chat")
        clean_env.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    handle = oa.configure(tracer_provider=TracerProvider(resource=Resource.create({"service.name": "otlp-test"})))
    try:
        _emit()
        assert handle.force_flush(timeout=10)
    finally:
        handle.shutdown()
    _check(receiver.wait_for(5))
    if protocol != "grpc":
        assert receiver.headers[0]["x-team"] == "chat"


def test_console_and_otlp_at_once(
    clean_env: pytest.MonkeyPatch, otlp_http_receiver: OtlpHttpReceiver, capfd: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("ANALYTICS_EXPORTERS", "console,otlp")
    clean_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp_http_receiver.endpoint + "/v1/traces")
    handle = oa.configure(tracer_provider=TracerProvider())
    try:
        oa.track_api_call(session_id="both", user_id="u")
        assert handle.force_flush(timeout=10)
    finally:
        handle.shutdown()
    assert [s["name"] for s in otlp_http_receiver.wait_for(1)] == ["api"]
    assert '"name": "api"' in capfd.readouterr().out


def test_each_signal_takes_its_own_protocol_variable_first(clean_env: pytest.MonkeyPatch) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

    from otel_analytics.errors import ConfigurationError
    from otel_analytics.exporters.otlp import otlp_exporter

    clean_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    clean_env.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    assert isinstance(otlp_exporter("traces"), HttpSpans)
    assert isinstance(otlp_exporter("metrics"), GrpcMetrics)
    clean_env.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json")
    with pytest.raises(ConfigurationError, match="OTEL_EXPORTER_OTLP_METRICS_PROTOCOL='http/json' is not supported"):
        otlp_exporter("metrics")
