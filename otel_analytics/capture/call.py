"""One captured provider call: what its request asks, what its answer reports, and its record.

- The request's body is read for ``model`` and ``stream`` only (its messages are recorded only
  with content capture on).
- A JSON answer the client has read already is read once; a streamed one through a wrapper of the
  response's byte stream, which hands each chunk on first, unchanged, and then to the same
  incremental readers the middleware uses (:mod:`otel_analytics.answers`).
- The record is an interaction span (:class:`~otel_analytics.recording.Recording`) in the session in
  context, with the outcome: ``completed``; ``failed`` (an HTTP error, a timeout, a connection
  error: no tokens); ``closed`` (the caller stopped reading before the answer's end);
  ``cancelled``.

Each call is counted once, whatever else records it:

- inside ``oa.interaction("chat")`` the first call fills that interaction instead of adding one
  (later calls inside it are interactions of their own, nested under it);
- inside a chat request of ``AnalyticsMiddleware`` the call is one of the app's own chats: the
  middleware records nothing more unless the answer shows another response's counts;
- ``track_interaction(type="chat")`` of the same call (its response id, or its model and counts)
  records nothing more (:func:`claim_captured`);
- under an SDK's own GenAI span (the anthropic SDK's, a peer instrumentation's), the interaction
  links to it and that span's ``gen_ai.usage.*`` counts move to ``analytics.sdk.*``
  (:mod:`~otel_analytics.capture.join`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from .. import attributes as attrs
from .._guard import report_internal_error, warn_once
from .._json import top_level
from .._text import clean
from ..answers import Inspector, inspector_for
from ..context import resolve_session
from ..recording import Recording, current_recording
from ..runtime import INSTRUMENTATION_SCOPE, Runtime
from ..usage import Usage
from .endpoints import Endpoint

_REQUEST_KEYS = ("model", "stream", "messages", "input", "system")
_TERMINAL = ("stop", "end_turn", "completed", "length", "max_tokens", "tool_calls", "tool_use")


class CapturedCall:
    """One provider call being recorded, from its request to the end of its answer."""

    __slots__ = (
        "_cap",
        "_first_chunk_ns",
        "_inspector",
        "_own",
        "_recording",
        "_runtime",
        "_start_ns",
        "_status",
        "_stream",
        "_unread",
    )

    def __init__(self, runtime: Runtime, recording: Recording, own: bool, stream: bool, cap: int) -> None:
        self._runtime = runtime
        self._recording = recording
        self._own = own
        self._stream = stream
        self._cap = cap
        self._start_ns = time.monotonic_ns()
        self._first_chunk_ns = 0
        self._status = 0
        self._inspector: Inspector | None = None
        self._unread: list[bytes] = []

    def sending(self) -> AbstractContextManager[None]:
        """Around the send: the call's own span is current (an HTTP client instrumentation's span
        nests under it); a call that fills an enclosing interaction changes nothing."""
        return self._recording.activated() if self._own else nullcontext()

    # --- the answer --------------------------------------------------------------------------------
    def answered(self, status: int, headers: Mapping[str, str], content: bytes | None) -> bool:
        """The answer's head arrived (with its body, when the client read it already). ``True``:
        its body is still to come, through :meth:`chunk` and :meth:`ended`."""
        self._status = status
        if status >= 400:
            self.failed(None, error_type=str(status))
            return False
        kind = (headers.get("content-type") or "").encode("latin-1", "replace")
        if content is not None:  # read by the client, and decoded: no encoding left
            inspector = inspector_for(kind, b"", self._cap)
            if inspector is not None:
                inspector.feed(content)
            self._inspector = inspector
            self.ended("completed")
            return False
        encoding = (headers.get("content-encoding") or "").encode("latin-1", "replace")
        self._inspector = inspector_for(kind, encoding, self._cap)
        return True

    def chunk(self, data: bytes) -> None:
        """A chunk the caller has received already (forwarded first, read second)."""
        if not self._first_chunk_ns:
            self._first_chunk_ns = time.monotonic_ns()
        if self._inspector is not None:
            self._unread.append(data)
            if len(self._unread) >= 32:
                self._read_unread()

    def _read_unread(self) -> None:
        unread, self._unread = self._unread, []
        if self._inspector is not None and unread:
            try:
                self._inspector.feed_many(unread)
            except Exception as error:
                self._inspector = None
                report_internal_error("capture.read", error)

    def ended(self, how: str) -> None:
        """The answer's body ended (``completed``), or the caller closed it early (``closed``)."""
        recording = self._recording
        if recording.ended and self._own:
            return
        usage = self._usage()
        if how == "closed" and usage is not None and _complete(usage):
            how = "completed"  # closed after the last event: the answer was whole
        if usage is not None:
            recording.add_usage(usage)
        if self._stream and self._first_chunk_ns:
            seconds = (self._first_chunk_ns - self._start_ns) / 1e9
            recording.set_attribute(attrs.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, seconds)
        if usage is not None:
            _remember(recording, usage)
        if self._own:
            recording.finish(outcome=how)

    def failed(self, exc: BaseException | None, *, error_type: str | None = None) -> None:
        """The call failed: an HTTP error answer (``error_type``, its status), a transport error or
        a cancellation (``exc``). No tokens are counted for it."""
        recording = self._recording
        recording.set_attribute(attrs.STATUS, "failed")
        if self._own:
            recording.finish(exc, error_type=error_type)
        elif error_type is not None:  # the enclosing interaction goes on; say what this call did
            recording.set_attribute(attrs.ERROR_TYPE, error_type)

    def _usage(self) -> Usage | None:
        inspector = self._inspector
        if inspector is None:
            return None
        self._read_unread()
        try:
            usage, _ = inspector.result()
        except Exception as error:
            report_internal_error("capture.read", error)
            return None
        return usage if usage is not None and (usage.reported or usage.response_model or usage.invalid) else None


def _complete(usage: Usage) -> bool:
    return usage.reported and any(reason in _TERMINAL for reason in usage.finish_reasons)


# --- starting a call -------------------------------------------------------------------------------
def begin(
    runtime: Runtime, endpoint: Endpoint, content: bytes | None, host: str, port: int | None
) -> CapturedCall | None:
    """A call to record, or ``None`` (outside a session, with ``ANALYTICS_CAPTURE_WITHOUT_SESSION=
    ignore``)."""
    settings = runtime.settings
    cap = settings.inspect_bytes
    model, stream, messages = _request(content, cap, settings.capture_content)
    enclosing = current_recording()
    if (
        enclosing is not None
        and enclosing.interaction_type == "chat"
        and not enclosing.captured
        and not enclosing.ended
    ):
        enclosing.captured = True  # this call fills it; a next one inside it is one of its own
        _mark_foreign(enclosing)
        return CapturedCall(runtime, enclosing, False, stream, cap)
    session = resolve_session(None, None)
    if session is None and settings.capture_without_session == "ignore":
        warn_once(
            "capture:no-session",
            "otel-analytics: provider calls outside any session are not recorded "
            "(ANALYTICS_CAPTURE_WITHOUT_SESSION=ignore).",
        )
        return None
    extra: dict[str, AttributeValue] = {attrs.SERVER_ADDRESS: host}
    if port is not None:
        extra[attrs.SERVER_PORT] = port
    if stream:
        extra[attrs.GEN_AI_REQUEST_STREAM] = True
    recording = Recording(
        runtime,
        "chat",
        session=session,
        model=model,
        provider=endpoint.provider,
        operation=endpoint.operation,
        attributes=extra,
    )
    if messages is not None:
        recording.record_content(input_messages=messages)
    _mark_foreign(recording)
    return CapturedCall(runtime, recording, True, stream, cap)


def _request(content: bytes | None, cap: int, with_content: bool) -> tuple[str | None, bool, Any]:
    """The requested model, whether it streams, and (with content capture on) its messages."""
    if not content or len(content) > cap:
        return None, False, None
    values = top_level(content, _REQUEST_KEYS)
    if values is None:
        return None, False, None
    model = clean(values[0]) if isinstance(values[0], str) and 0 < len(values[0]) <= 256 else None
    messages = None
    if with_content:
        messages = values[2] if values[2] is not None else values[3]
    return model, values[1] is True, messages


def _mark_foreign(recording: Recording) -> None:
    """Under another instrumentation's GenAI span (an SDK's own): name the span that counts the
    call on it, for the join processor to move its usage counts at its end."""
    current = trace.get_current_span()
    if current is recording.span or not current.is_recording():
        return
    scope = getattr(current, "instrumentation_scope", None)
    if scope is not None and getattr(scope, "name", None) == INSTRUMENTATION_SCOPE:
        return
    found = getattr(current, "attributes", None) or {}
    if attrs.GEN_AI_OPERATION_NAME in found or attrs.GEN_AI_PROVIDER_NAME in found:
        current.set_attribute(attrs.COUNTED_IN, format(recording.span.get_span_context().span_id, "016x"))


# --- track_interaction of a captured call -------------------------------------------------------------
# Captured calls of the running context not yet claimed by a track_interaction of the same call:
# (span id, response id, models, input tokens, output tokens). A few, newest last.
_recent: ContextVar[deque[tuple[int, str | None, frozenset[str], int | None, int | None]] | None] = ContextVar(
    "otel_analytics_captured", default=None
)


def _remember(recording: Recording, usage: Usage) -> None:
    recent = _recent.get()
    if recent is None:
        recent = deque(maxlen=16)
        _recent.set(recent)
    models = frozenset(name for name in (recording.model, usage.response_model) if name)
    recent.append(
        (recording.span.get_span_context().span_id, usage.response_id, models, usage.input_tokens, usage.output_tokens)
    )


def claim_captured(
    response_id: str | None, model: str | None, input_tokens: int | None, output_tokens: int | None
) -> int | None:
    """The span id of a captured call that a ``track_interaction`` describes (same response id,
    or same model and token counts), taken once; ``None``: none did."""
    recent = _recent.get()
    if not recent:
        return None
    for index in range(len(recent) - 1, -1, -1):
        span_id, captured_id, models, captured_in, captured_out = recent[index]
        if response_id is not None:
            same = response_id == captured_id
        else:
            same = (
                model in models
                and input_tokens == captured_in
                and output_tokens == captured_out
                and (input_tokens is not None or output_tokens is not None)
            )
        if same:
            del recent[index]
            return span_id
    return None
