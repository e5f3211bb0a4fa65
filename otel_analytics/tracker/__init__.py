"""The local tracker: the tracker wire contract on Starlette and SQLite, with a read API.

``otel-analytics tracker serve`` runs it; ``create_app()`` builds the ASGI app for tests and for
embedding. It needs the ``server`` extra (``pip install 'otel-analytics[server]'``).
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
