"""otel-analytics: per-conversation usage and cost analytics for LLM chat backends, on OpenTelemetry.

A conversation (session) is a trace whose id derives from the session id; each interaction
(``chat``, ``db``, ``api``, ``cost-event``) is a span with the GenAI semantic-convention
attributes, the session and user, and a cost estimate. See the README for the quick start.

Importing this package does no work: the modules behind the names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .asgi import AnalyticsMiddleware, RouteRule, instrument_app
    from .client import health_check, track_api_call, track_db_operation, track_interaction
    from .configuration import AnalyticsHandle, configure, handle
    from .errors import AnalyticsError, ConfigurationError
    from .ids import session_root_span_id, session_trace_id
    from .interactions import interaction
    from .recording import Recording
    from .sessions import end_session, session, start_session

_EXPORTS = {
    "AnalyticsMiddleware": "asgi",
    "RouteRule": "asgi",
    "instrument_app": "asgi",
    "AnalyticsError": "errors",
    "AnalyticsHandle": "configuration",
    "ConfigurationError": "errors",
    "Recording": "recording",
    "configure": "configuration",
    "handle": "configuration",
    "end_session": "sessions",
    "health_check": "client",
    "interaction": "interactions",
    "session": "sessions",
    "session_root_span_id": "ids",
    "session_trace_id": "ids",
    "start_session": "sessions",
    "track_api_call": "client",
    "track_db_operation": "client",
    "track_interaction": "client",
}

__all__ = [
    "AnalyticsError",
    "AnalyticsHandle",
    "AnalyticsMiddleware",
    "ConfigurationError",
    "Recording",
    "RouteRule",
    "__version__",
    "configure",
    "end_session",
    "handle",
    "health_check",
    "instrument_app",
    "interaction",
    "session",
    "session_root_span_id",
    "session_trace_id",
    "start_session",
    "track_api_call",
    "track_db_operation",
    "track_interaction",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_analytics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
