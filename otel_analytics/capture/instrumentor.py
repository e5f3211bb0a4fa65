"""``opentelemetry-instrument`` picks the capture up with no code: an ``opentelemetry_instrumentor``
entry point (``otel_analytics_llm_calls``).

It hooks httpx and httpx2, whichever is installed (it declares no dependency for the agent to
check, since either will do), and honours ``ANALYTICS_CAPTURE_LLM_CALLS=false``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from ..settings import parse_bool


class LLMCallsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``LLMCallsInstrumentor().instrument()`` / ``.uninstrument()``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        import os

        from . import instrument

        if parse_bool("ANALYTICS_CAPTURE_LLM_CALLS", os.environ.get("ANALYTICS_CAPTURE_LLM_CALLS") or "true"):
            instrument()

    def _uninstrument(self, **kwargs: Any) -> None:
        from . import uninstall

        uninstall()
