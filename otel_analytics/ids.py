"""The session id → trace id rule: one conversation is one trace, everywhere.

A session's trace id is a pure function of its id, so every request, process and language that
applies the same rule puts the session's spans in the same trace without sharing any state::

    trace_id     = SHA-256(b"otel-analytics/v1/trace\\x00" + utf8(session_id))[:16]
    root_span_id = SHA-256(b"otel-analytics/v1/span\\x00"  + utf8(session_id))[:8]

Both are read as big-endian integers. An all-zero result (invalid in OpenTelemetry) becomes 1.
Worked example (pinned by a test and shown in the README): for ``"conv-1"``,
SHA-256(b"otel-analytics/v1/trace\\x00conv-1") starts ``13b3ce507342d66227f23126117dec32``, which
is the trace id; the root span id is ``f629897a679b472f``.
"""

from __future__ import annotations

import hashlib
from typing import Final

TRACE_ID_PREFIX: Final = b"otel-analytics/v1/trace\x00"
ROOT_SPAN_ID_PREFIX: Final = b"otel-analytics/v1/span\x00"


def _derive(prefix: bytes, session_id: str, size: int) -> int:
    digest = hashlib.sha256(prefix + session_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:size], "big") or 1


def session_trace_id(session_id: str) -> int:
    """The 128-bit trace id of a session's trace."""
    return _derive(TRACE_ID_PREFIX, session_id, 16)


def session_root_span_id(session_id: str) -> int:
    """The 64-bit span id of a session's root span, parent of all its interactions."""
    return _derive(ROOT_SPAN_ID_PREFIX, session_id, 8)
