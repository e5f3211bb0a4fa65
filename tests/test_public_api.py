from __future__ import annotations

import json
from pathlib import Path

import otel_analytics as oa
from tests.helpers import run_python

# The stable names of shared/design.md, plus the package's error types, handle and id helpers.
DESIGN_NAMES = {
    "AnalyticsMiddleware",
    "instrument_app",
    "configure",
    "session",
    "interaction",
    "start_session",
    "end_session",
    "track_interaction",
    "track_db_operation",
    "track_api_call",
    "health_check",
}


def test_all_is_the_documented_surface() -> None:
    assert oa.__all__ == sorted(oa.__all__)
    assert set(oa.__all__) >= DESIGN_NAMES
    assert set(oa.__all__) == DESIGN_NAMES | {
        "AnalyticsError",
        "AnalyticsHandle",
        "ConfigurationError",
        "Recording",
        "RouteRule",
        "__version__",
        "handle",
        "session_root_span_id",
        "session_trace_id",
    }
    for name in oa.__all__:
        assert getattr(oa, name) is not None
    assert issubclass(oa.ConfigurationError, ValueError)


def test_import_does_no_work() -> None:
    result = run_python(
        """
        import json, sys
        import otel_analytics
        heavy = ["httpx", "genai_prices", "starlette", "sqlite3", "opentelemetry.exporter", "grpc",
                 "opentelemetry.sdk"]
        print(json.dumps([m for m in heavy if any(k == m or k.startswith(m + ".") for k in sys.modules)]))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_api_works_without_configure_through_the_global_provider() -> None:
    result = run_python(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        provider = TracerProvider()
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        import otel_analytics as oa
        oa.track_api_call(session_id="s", user_id="u")
        print([s.name for s in exporter.get_finished_spans()])
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['api']"


def test_bad_environment_without_configure_disables_instead_of_crashing() -> None:
    result = run_python(
        """
        import otel_analytics as oa
        print(oa.track_api_call(session_id="s", user_id="u"))
        """,
        ANALYTICS_ENABLED="perhaps",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"
    assert "ANALYTICS_ENABLED='perhaps'" in result.stderr


def test_a_starlette_or_fastapi_app_type_checks_as_an_app_the_middleware_wraps(tmp_path: Path) -> None:
    """Users who run mypy --strict wrap their app in one line without a type: ignore."""
    from mypy import api as mypy

    user_code = tmp_path / "user_app.py"
    user_code.write_text(
        "from fastapi import FastAPI\n"
        "from starlette.applications import Starlette\n"
        "from starlette.types import Scope\n\n"
        "import otel_analytics as oa\n\n\n"
        "def user_of(scope: Scope) -> str | None:\n"
        "    return None\n\n\n"
        "starlette_app = oa.AnalyticsMiddleware(Starlette(), user_id=user_of)\n"
        "fastapi_app = oa.AnalyticsMiddleware(FastAPI())\n"
        "twice = oa.AnalyticsMiddleware(starlette_app)\n"
    )
    out, err, status = mypy.run(
        ["--strict", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"), str(user_code)]
    )
    assert status == 0, out + err
