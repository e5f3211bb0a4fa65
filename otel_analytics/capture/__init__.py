"""Capture of the app's own calls to LLM providers, at the HTTP client (httpx and httpx2).

On by default once ``configure()`` runs (``ANALYTICS_CAPTURE_LLM_CALLS=false`` or
``configure(capture_llm_calls=False)`` turns it off), and an ``opentelemetry_instrumentor`` entry
point for ``opentelemetry-instrument`` (:mod:`.instrumentor`). See :mod:`.call` for what a call
records and the rules that count each call once.
"""

from __future__ import annotations

from .join import JoinForeignGenAISpans, add_first
from .patch import install as instrument
from .patch import installed, uninstall

__all__ = ["JoinForeignGenAISpans", "add_first", "installed", "instrument", "uninstall"]
