from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_analytics as oa
from otel_analytics import exporters as exporter_registry
from otel_analytics.errors import ConfigurationError
from otel_analytics.settings import Settings
from tests.helpers import run_python


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("ANALYTICS_ENABLED", "maybe", "true, false"),
        ("ANALYTICS_EXPORTERS", "console,kafka", "tracker, otlp, console, none"),
        ("ANALYTICS_EXPORTERS", "none,console", "one or the other"),
        ("ANALYTICS_TRACKER_URL", "ftp://tracker", "http:// or https://"),
        ("ANALYTICS_CAPTURE_CONTENT", "sometimes", "true, false"),
        ("ANALYTICS_TIMEOUT_S", "-1", "positive number"),
        ("ANALYTICS_TIMEOUT_S", "nan", "positive number"),
        ("ANALYTICS_FLUSH_TIMEOUT_S", "soon", "positive number"),
        ("ANALYTICS_PRICING_FILE", "/nonexistent/prices.toml", "TOML or JSON"),
        ("ANALYTICS_NEW_MODELS_PER_S", "0", "positive number per second, or unlimited"),
        ("ANALYTICS_NEW_MODELS_PER_S", "lots", "positive number per second, or unlimited"),
        ("OTEL_SDK_DISABLED", "yes please", "true, false"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "http/protobuf, grpc"),
        ("OTEL_TRACES_SAMPLER", "sometimes", "parentbased_always_on"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0", "positive integer"),
        ("OTEL_RESOURCE_ATTRIBUTES", "service.name", "key=value"),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "all", "SPAN_ONLY"),
    ],
)
def test_bad_values_name_the_variable_and_accepted_values(
    clean_env: pytest.MonkeyPatch, variable: str, value: str, accepted: str
) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        oa.configure(tracer_provider=TracerProvider())
    assert variable in str(caught.value)
    assert repr(value) in str(caught.value) or value in str(caught.value)
    assert accepted in str(caught.value)


def test_sampler_ratio_and_batch_sizes_are_checked(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    clean_env.setenv("OTEL_TRACES_SAMPLER_ARG", "1.5")
    with pytest.raises(ConfigurationError, match="OTEL_TRACES_SAMPLER_ARG"):
        Settings.load()
    clean_env.delenv("OTEL_TRACES_SAMPLER_ARG")
    clean_env.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "10")
    clean_env.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "20")
    with pytest.raises(ConfigurationError, match="OTEL_BSP_MAX_EXPORT_BATCH_SIZE=20"):
        Settings.load()


def test_keywords_win_over_environment_and_unknown_keywords_fail(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ANALYTICS_TIMEOUT_S", "9")
    assert Settings.load().timeout_s == 9.0
    assert Settings.load({"timeout_s": 2}).timeout_s == 2.0
    with pytest.raises(ConfigurationError, match="timeout_s"):
        Settings.load({"timeout_s": 0})
    with pytest.raises(TypeError, match="tracker_ur"):
        oa.configure(tracer_provider=TracerProvider(), tracker_ur="http://x")


def test_empty_variables_count_as_unset(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ANALYTICS_ENABLED", "")
    clean_env.setenv("ANALYTICS_TIMEOUT_S", "  ")
    settings = Settings.load()
    assert settings.enabled is True
    assert settings.timeout_s == 5.0


def test_token_is_never_in_the_settings_repr(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ANALYTICS_TRACKER_TOKEN", "sekrit-canary")
    assert "sekrit-canary" not in repr(Settings.load())


def test_joins_an_existing_provider_and_exports_only_its_own_spans(clean_env: pytest.MonkeyPatch) -> None:
    provider = TracerProvider()
    theirs = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(theirs))
    ours = InMemorySpanExporter()
    exporter_registry.FACTORIES["memory"] = lambda settings: ours
    clean_env.setattr("otel_analytics.settings.EXPORTER_NAMES", ("console", "otlp", "none", "memory"))
    try:
        handle = oa.configure(tracer_provider=provider, exporters="memory")
        try:
            with provider.get_tracer("app").start_as_current_span("the app's own span"):
                oa.track_api_call(session_id="s", user_id="u")
            assert handle.force_flush(timeout=5)
            assert [s.name for s in ours.get_finished_spans()] == ["api"]
            assert sorted(s.name for s in theirs.get_finished_spans()) == ["api", "the app's own span"]
        finally:
            handle.shutdown()
    finally:
        del exporter_registry.FACTORIES["memory"]


def test_second_configure_returns_the_same_handle_and_never_double_exports(
    clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    provider = TracerProvider()
    exported = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    first = oa.configure(tracer_provider=provider, exporters=())
    try:
        second = oa.configure(tracer_provider=TracerProvider(), exporters="console", service_name="other")
        assert second is first
        assert "already configured" in caplog.text
        oa.track_db_operation(session_id="s", read_ops=1)
        assert len(exported.get_finished_spans()) == 1
    finally:
        first.shutdown()


def test_disabled_makes_every_call_a_cheap_noop(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_SDK_DISABLED", "true")
    provider = TracerProvider()
    exported = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    handle = oa.configure(tracer_provider=provider)
    try:
        assert not handle.settings.enabled
        with oa.session("s", user_id="u"):
            with oa.interaction("chat", model="gpt-4o") as it:
                it.record_usage(input_tokens=1)
            assert oa.track_interaction(session_id="s", user_id="u", model_name="m") is None

            @oa.interaction("db")
            def work() -> int:
                return 7

            assert work() == 7
        assert exported.get_finished_spans() == ()
        # Cheap: a disabled interaction costs little more than the with statement itself.
        started = time.perf_counter()
        for _ in range(10_000):
            with oa.interaction("db"):
                pass
        assert (time.perf_counter() - started) / 10_000 < 50e-6
    finally:
        handle.shutdown()


class HangingExporter(SpanExporter):
    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(30)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.wait(30)


class CountingExporter(SpanExporter):
    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def test_flush_and_shutdown_return_within_their_timeout_when_an_exporter_hangs(
    clean_env: pytest.MonkeyPatch,
) -> None:
    hanging, counting = HangingExporter(), CountingExporter()
    exporter_registry.FACTORIES["hang"] = lambda settings: hanging
    exporter_registry.FACTORIES["count"] = lambda settings: counting
    clean_env.setattr("otel_analytics.settings.EXPORTER_NAMES", ("hang", "count"))
    clean_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    try:
        handle = oa.configure(tracer_provider=TracerProvider(), exporters="hang,count")
        for _ in range(20):
            oa.track_api_call(session_id="s")
        # The hanging exporter does not stall the other one: each has its own processor.
        deadline = time.monotonic() + 5
        while counting.count < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert counting.count == 20
        started = time.monotonic()
        assert handle.force_flush(timeout=0.3) is False
        assert handle.shutdown(timeout=0.3) is False
        assert time.monotonic() - started < 1.5
    finally:
        hanging.release.set()
        del exporter_registry.FACTORIES["hang"], exporter_registry.FACTORIES["count"]


def test_builds_and_installs_a_provider_when_none_exists() -> None:
    result = run_python(
        """
        from opentelemetry import trace
        import otel_analytics as oa
        handle = oa.configure(exporters="console")
        assert trace.get_tracer_provider() is handle.tracer_provider
        oa.track_interaction(session_id="conv-9", user_id="u", model_name="gpt-4o", prompt_tokens=10)
        # no shutdown: the atexit flush must export it
        """,
        OTEL_SERVICE_NAME="chat-api",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test",
    )
    assert result.returncode == 0, result.stderr
    span = json.loads(result.stdout)
    assert span["name"] == "chat gpt-4o"
    assert span["resource"]["attributes"]["service.name"] == "chat-api"
    assert span["resource"]["attributes"]["deployment.environment"] == "test"


def test_the_flush_at_exit_runs_where_no_thread_can_be_started() -> None:
    # Python 3.12 and later refuse new threads in atexit callbacks; the flush at exit runs there.
    result = run_python(
        """
        import atexit, threading
        import otel_analytics as oa
        oa.configure(exporters="console")
        oa.track_interaction(session_id="conv-exit", user_id="u", model_name="gpt-4o", prompt_tokens=10)

        def refuse(thread):
            raise RuntimeError("can't create new thread at interpreter shutdown")

        # Registered after configure(), so it runs before the handle's flush at exit (last in, first out).
        atexit.register(lambda: setattr(threading.Thread, "start", refuse))
        """
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert json.loads(result.stdout)["attributes"]["session.id"] == "conv-exit"


def test_otel_traces_exporter_is_used_when_we_build_the_provider() -> None:
    result = run_python(
        """
        import otel_analytics as oa
        handle = oa.configure()
        assert handle.exporters == ("console",), handle.exporters
        oa.track_api_call(session_id="s")
        handle.shutdown()
        """,
        OTEL_TRACES_EXPORTER="console",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == "api"
    result = run_python("import otel_analytics as oa; oa.configure()", OTEL_TRACES_EXPORTER="zipkin")
    assert result.returncode != 0
    assert "OTEL_TRACES_EXPORTER='zipkin'" in result.stderr
