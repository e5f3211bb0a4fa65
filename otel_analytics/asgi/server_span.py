"""The HTTP server span, for apps that have no HTTP instrumentation of their own.

``opentelemetry-instrumentation-asgi``'s middleware makes it (trace-context propagation, the HTTP
conventions' attributes), with its per-message send/receive spans off. It records the request's
URL with its query string (``http.url``, ``http.target``, ``url.query``), so a hook redacts the
values of credential-looking query parameters (:mod:`otel_analytics.redaction`) before the span
ends, and the headers it may capture on request (``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*``)
never include the credential headers' values.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping
from typing import Any

from opentelemetry import trace

from .. import attributes as attrs
from ..redaction import QueryRedactor

# Header values contrib's header capture masks, besides those the environment names.
_SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key")
_URLS = (attrs.HTTP_URL, attrs.HTTP_TARGET, attrs.URL_FULL)


def redacting_hook(redactor: QueryRedactor) -> Callable[[trace.Span, MutableMapping[str, Any]], None]:
    """A ``server_request_hook`` that redacts the query of the span's URL attributes."""

    def hook(span: trace.Span, scope: MutableMapping[str, Any]) -> None:
        if not scope.get("query_string") or not span.is_recording():
            return
        recorded = getattr(span, "attributes", None) or {}
        for name in _URLS:
            value = recorded.get(name)
            if isinstance(value, str) and "?" in value:
                redacted = redactor.url(value)
                if redacted != value:
                    span.set_attribute(name, redacted)
        query = recorded.get(attrs.URL_QUERY)
        if isinstance(query, str):
            redacted = redactor.query(query)
            if redacted != query:
                span.set_attribute(attrs.URL_QUERY, redacted)

    return hook


def sanitized_headers() -> list[str]:
    """The header names whose captured values contrib masks: the environment's and ours."""
    raw = os.environ.get("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS", "")
    return [*filter(None, (name.strip() for name in raw.split(","))), *_SECRET_HEADERS]


def with_server_span(app: Any, provider: trace.TracerProvider, redact_query_params: tuple[str, ...]) -> Any:
    """``app`` inside contrib's middleware (raises ``ImportError`` without the ``asgi`` extra)."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(
        app,
        exclude_spans=["receive", "send"],
        tracer_provider=provider,
        server_request_hook=redacting_hook(QueryRedactor(redact_query_params)),
        http_capture_headers_sanitize_fields=sanitized_headers(),
    )
