"""Sessions (conversations) as traces: start and end spans, and the root span at the end.

The session's trace id and root span id are derived from its id (:mod:`otel_analytics.ids`), so
``start_session`` in one process, interactions in others and ``end_session`` in a third all land
in one trace. The root span covers start to end and is emitted when the session ends; when the
start happened in another process its time is unknown here, unless ``end_session`` is given
``start_time``, and the root span then starts at the end (``analytics.session.start_time`` absent).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind

from . import attributes as attrs
from . import runtime as _runtime
from ._guard import internal_errors
from .context import ANONYMOUS_USER, SessionRef, current_session, session_parent
from .contract import iso
from .recording import metadata_json
from .runtime import Runtime, pinned_ids

_MAX_REMEMBERED = 10_000


class _StartTimes:
    """Start times of the sessions started in this process (bounded: oldest forgotten first)."""

    def __init__(self) -> None:
        self._times: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, session_id: str, start_ns: int) -> None:
        with self._lock:
            self._times.setdefault(session_id, start_ns)
            if len(self._times) > _MAX_REMEMBERED:
                self._times.popitem(last=False)

    def pop(self, session_id: str) -> int | None:
        with self._lock:
            return self._times.pop(session_id, None)


_start_times = _StartTimes()


def _to_ns(value: datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("start_time must be timezone-aware (use datetime.now(UTC)).")
    return int(value.timestamp() * 1e9)


def _base_attributes(session: SessionRef, event: str) -> dict[str, Any]:
    return {
        attrs.SESSION_ID: session.session_id,
        attrs.USER_ID: session.user_id,
        attrs.GEN_AI_CONVERSATION_ID: session.session_id,
        attrs.SESSION_EVENT: event,
    }


def _instant_span(runtime: Runtime, session: SessionRef, event: str, at: int, extra: Mapping[str, Any]) -> None:
    span = runtime.tracer.start_span(
        f"session {event}",
        context=session_parent(runtime, session),
        kind=SpanKind.INTERNAL,
        attributes={**_base_attributes(session, event), **extra},
        start_time=at,
    )
    span.end(end_time=at)


def start_session(
    session_id: str,
    user_id: str | None = None,
    *,
    metadata: Mapping[str, Any] | None = None,
    start_time: datetime | None = None,
) -> None:
    """Record the start of a session (idempotent at the tracker: a repeated start changes nothing)."""
    runtime = _runtime.current()
    if not runtime.settings.enabled:
        return
    _check_id(session_id)
    with internal_errors("start_session"):
        session = SessionRef.of(session_id, user_id)
        at = _to_ns(start_time) or time.time_ns()
        _start_times.remember(session_id, at)
        extra = {attrs.METADATA: metadata_json(metadata)} if metadata else {}
        _instant_span(runtime, session, "start", at, extra)


def end_session(
    session_id: str,
    user_id: str | None = None,
    *,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
) -> None:
    """Record the end of a session and emit its root span (start to end)."""
    runtime = _runtime.current()
    if not runtime.settings.enabled:
        return
    _check_id(session_id)
    with internal_errors("end_session"):
        ambient = current_session.get()
        if user_id is None and ambient is not None and ambient.session_id == session_id:
            user_id = ambient.user_id
        session = SessionRef.of(session_id, user_id)
        end = _to_ns(end_time) or time.time_ns()
        start = _to_ns(start_time) or _start_times.pop(session_id)
        extra = {attrs.SESSION_START_TIME: iso(start)} if start is not None else {}
        _instant_span(runtime, session, "end", end, extra)
        # The root span carries the derived ids; a trace-id sampler decides it like the children.
        with pinned_ids(session.trace_id, session.root_span_id):
            root = runtime.tracer.start_span(
                "session",
                context=otel_context.Context(),  # no parent: the root of the trace
                kind=SpanKind.INTERNAL,
                attributes={**_base_attributes(session, "root"), **extra},
                start_time=min(start, end) if start is not None else end,
            )
        root.end(end_time=end)


def _check_id(session_id: object) -> None:
    if not isinstance(session_id, str) or not session_id or len(session_id) > 256:
        raise ValueError(f"session_id must be a non-empty string of at most 256 characters, got {session_id!r}.")


@contextmanager
def session(
    session_id: str,
    user_id: str | None = None,
    *,
    metadata: Mapping[str, Any] | None = None,
    start: bool = True,
    end: bool = True,
) -> Iterator[SessionRef]:
    """Run the block inside a session: its interactions, and tasks started in it, belong to it.

    ``start=False`` / ``end=False`` bind to a session that starts or ends elsewhere (for example
    one HTTP request of a longer conversation).
    """
    _check_id(session_id)
    ref = SessionRef.of(session_id, user_id or ANONYMOUS_USER)
    if start:
        start_session(session_id, ref.user_id, metadata=metadata)
    token = current_session.set(ref)
    try:
        yield ref
    finally:
        current_session.reset(token)
        if end:
            end_session(session_id, ref.user_id)
