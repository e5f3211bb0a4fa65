"""``opentelemetry-instrument uvicorn app:app``: the analytics layer on every Starlette and FastAPI
app, with no line of otel-analytics in the app (an ``opentelemetry_instrumentor`` entry point,
``otel_analytics_asgi``).

Both build their middleware stack lazily, on their first message, through
``build_middleware_stack``: wrapping that (on the classes, so apps made before or after are
covered) puts ``AnalyticsMiddleware`` around each app's stack. The FastAPI instrumentor, when it
runs too, wraps that stack again with its own server span: the analytics layer then joins it.
An app that also calls ``instrument_app`` is recorded once (the layers see each other).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Iterator
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

_CLASSES = (("starlette.applications", "Starlette"), ("fastapi", "FastAPI"))
_MARK = "_otel_analytics_wrapped"


def _wrapping(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def build_middleware_stack(self: Any) -> Any:
        from .middleware import AnalyticsMiddleware

        return AnalyticsMiddleware(original(self))

    setattr(build_middleware_stack, _MARK, original)
    return build_middleware_stack


class ASGIAppsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``ASGIAppsInstrumentor().instrument()`` / ``.uninstrument()``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # Starlette, FastAPI or both: whichever is installed

    def _instrument(self, **kwargs: Any) -> None:
        for cls, current in _stacks():
            if not hasattr(current, _MARK):
                cls.build_middleware_stack = _wrapping(current)

    def _uninstrument(self, **kwargs: Any) -> None:
        for cls, current in _stacks():
            if hasattr(current, _MARK):
                cls.build_middleware_stack = getattr(current, _MARK)


def _stacks() -> Iterator[tuple[Any, Any]]:
    """Each installed app class (Starlette, FastAPI) that defines ``build_middleware_stack``
    itself, with that method as it is now."""
    for module_name, class_name in _CLASSES:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        current = cls.__dict__.get("build_middleware_stack")
        if current is not None:
            yield cls, current
