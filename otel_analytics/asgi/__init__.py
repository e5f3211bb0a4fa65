"""ASGI auto-instrumentation: ``app = AnalyticsMiddleware(app)`` or ``instrument_app(app)``."""

from __future__ import annotations

from .middleware import AnalyticsMiddleware, instrument_app
from .rules import DEFAULT_RULES, RouteRule

__all__ = ["DEFAULT_RULES", "AnalyticsMiddleware", "RouteRule", "instrument_app"]
