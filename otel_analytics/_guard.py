"""Analytics must never break the app: internal errors are logged once and swallowed.

Under pytest (``PYTEST_CURRENT_TEST`` set) they are re-raised instead, so our own bugs fail our
tests rather than hiding; tests of the swallowing itself turn that off with ``RAISE_UNDER_PYTEST``.
"""

from __future__ import annotations

import logging
import os
import threading
from types import TracebackType

logger = logging.getLogger("otel_analytics")

RAISE_UNDER_PYTEST = True
_MAX_KEYS = 1024
_seen: set[str] = set()
_seen_lock = threading.Lock()


def _first_time(key: str) -> bool:
    with _seen_lock:
        if key in _seen or len(_seen) >= _MAX_KEYS:
            return False
        _seen.add(key)
        return True


def warn_once(key: str, message: str, *args: object) -> None:
    """Log a warning the first time ``key`` is seen in this process, never again."""
    if _first_time(key):
        logger.warning(message, *args)


def report_internal_error(where: str, error: Exception) -> None:
    """Log ``error`` once per ``where`` (re-raise it under pytest). Call from an ``except`` block."""
    if RAISE_UNDER_PYTEST and "PYTEST_CURRENT_TEST" in os.environ:
        raise error
    if _first_time("internal:" + where):
        logger.error(
            "otel-analytics internal error in %s; your code is still running fine, with less telemetry.",
            where,
            exc_info=error,
        )


class internal_errors:
    """Swallow (and log once per ``where``) any exception raised by analytics code inside.

    A class rather than ``@contextmanager``: it runs on every ``track_*`` call, and a generator
    based one costs several times more.
    """

    __slots__ = ("_where",)

    def __init__(self, where: str) -> None:
        self._where = where

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> bool:
        if isinstance(error, Exception):
            report_internal_error(self._where, error)
            return True
        return False
