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

import asyncio
import json
import time
from collections import deque
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext
from opentelemetry.util.types import AttributeValue

from .. import attributes as attrs
from .._guard import report_internal_error, warn_once
from .._json import top_level
from .._text import clean
from ..answers import Inspector, inspector_for
from ..context import SessionRef, claim_request_link, note_app_chat, resolve_session
from ..finished_spans import NOT_SAMPLED, SAMPLED
from ..recording import Recording, current_recording, emit_interaction, link_back
from ..runtime import INSTRUMENTATION_SCOPE, Runtime
from ..usage import Usage
from .endpoints import Endpoint

_REQUEST_KEYS = ("model", "stream")
_REQUEST_KEYS_WITH_CONTENT = ("model", "stream", "messages", "input")
"""What a request is read for; its messages only with content capture on (the others are skipped
unbuilt: a request carrying a long history costs no Python object per message)."""
_TERMINAL = ("stop", "end_turn", "completed", "length", "max_tokens", "tool_calls", "tool_use")


class _Current:
    """``span`` current inside the block (as ``trace.use_span``, without its generator)."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def __enter__(self) -> None:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))

    def __exit__(self, *exc: object) -> None:
        otel_context.detach(self._token)


class CapturedCall:
    """One provider call being recorded, from its request to the end of its answer.

    Its own interaction is built once, finished, when the answer ends (as the middleware builds
    its own: all it records is known then), with a span id fixed at the start: while the request
    is sent, a stand-in with that id is the current span, so an HTTP client instrumentation's
    span nests under it. A call that fills an enclosing ``oa.interaction("chat")``, or one outside
    any session, goes through that live interaction (:class:`~otel_analytics.recording.Recording`).
    """

    __slots__ = (
        "_attributes",
        "_cap",
        "_context",
        "_first_chunk_ns",
        "_inspector",
        "_links",
        "_live",
        "_model",
        "_operation",
        "_own",
        "_parent",
        "_provider",
        "_runtime",
        "_session",
        "_start_ns",
        "_start_wall_ns",
        "_stream",
        "_unread",
        "chunk_ends",
    )

    def __init__(
        self,
        runtime: Runtime,
        *,
        stream: bool,
        cap: int,
        live: Recording | None = None,
        own: bool = True,
        session: SessionRef | None = None,
        model: str | None = None,
        provider: str | None = None,
        operation: str = "chat",
        attributes: dict[str, AttributeValue] | None = None,
        current: trace.Span | None = None,
    ) -> None:
        self._runtime = runtime
        self._stream = stream
        self._cap = cap
        self._live = live
        self._own = own
        self._session = session
        self._model = model
        self._provider = provider
        self._operation = operation
        self._attributes = attributes if attributes is not None else {}
        self._start_ns = time.monotonic_ns()
        self._start_wall_ns = time.time_ns()
        self._first_chunk_ns = 0
        self.chunk_ends: list[int] | None = [] if stream and runtime.metrics is not None else None
        """When each chunk of the stream arrived (monotonic ns), for the metrics; the stream appends."""
        self._inspector: Inspector | None = None
        self._unread: list[bytes] = []
        self._parent: otel_context.Context | None = None
        self._links: tuple[Link, ...] = ()
        self._context: SpanContext | None = None
        if live is None and session is not None:
            self._place(session, current if current is not None else trace.get_current_span())

    def _place(self, session: SessionRef, current: trace.Span) -> None:
        """Where the interaction goes, and its span id, fixed now (``current``, the span current
        now, decides): under it when it is in the session's trace, else under the session's root
        (``_parent`` left ``None``), linked both ways with it."""
        runtime = self._runtime
        context = current.get_span_context()
        claimed = claim_request_link(session)  # inside a middleware chat request: the id it links to
        if context.is_valid and context.trace_id == session.trace_id:
            self._parent = otel_context.get_current()
            flags = context.trace_flags
        else:
            flags = SAMPLED if runtime.session_sampled(session.trace_id) else NOT_SAMPLED
            if context.is_valid:
                self._links = (Link(context),)
        self._context = claimed or SpanContext(session.trace_id, runtime.new_span_id(), False, flags)
        if self._links:
            link_back(session, self._context, claimed)

    @property
    def span_id(self) -> int:
        if self._context is not None:
            return self._context.span_id
        assert self._live is not None
        return self._live.span.get_span_context().span_id

    def sending(self) -> AbstractContextManager[object]:
        """Around the send: the call's own span is current (an HTTP client instrumentation's span
        nests under it); a call that fills an enclosing interaction changes nothing."""
        if self._context is not None:
            return _Current(trace.NonRecordingSpan(self._context))
        if self._live is not None and self._own:
            return self._live.activated()
        return nullcontext()

    # --- the answer --------------------------------------------------------------------------------
    def answered(self, status: int, headers: Iterable[tuple[bytes, bytes]], content: bytes | None) -> bool:
        """The answer's head arrived (``headers``: its raw name and value pairs), with its body
        when the client read it already. ``True``: its body is still to come, through
        :meth:`chunk` and :meth:`ended`."""
        if status >= 400:
            self._finish("failed", None, error_type=str(status))
            return False
        kind, encoding = _content_headers(headers)
        if content is not None:  # read by the client, and decoded: no encoding left
            inspector = inspector_for(kind, b"", self._cap)
            if inspector is not None:
                inspector.feed(content)
            self._inspector = inspector
            self.ended("completed")
            return False
        self._inspector = inspector_for(kind, encoding, self._cap)
        return True

    def first_chunk(self) -> None:
        """The answer's first chunk arrived (now)."""
        self._first_chunk_ns = time.monotonic_ns()

    @property
    def unread(self) -> list[bytes] | None:
        """Where the stream's chunks go once the caller has them (``None``: nothing reads them):
        the stream appends to it itself (a C call a chunk), and every 32 calls :meth:`read`."""
        return self._unread if self._inspector is not None else None

    def read(self) -> None:
        """Hand the chunks received so far to the inspector."""
        if len(self._unread) >= 32:
            self._read_unread()

    def _read_unread(self) -> None:
        unread = self._unread  # the stream holds this very list: emptied, never replaced
        if self._inspector is not None and unread:
            try:
                self._inspector.feed_many(unread)
            except Exception as error:
                self._inspector = None
                report_internal_error("capture.read", error)
        unread.clear()

    def ended(self, how: str) -> None:
        """The answer's body ended (``completed``), or the caller closed it early (``closed``)."""
        usage = self._usage()
        if how == "closed" and usage is not None and _complete(usage):
            how = "completed"  # closed after the last event: the answer was whole
        if self._stream and self._first_chunk_ns:
            seconds = (self._first_chunk_ns - self._start_ns) / 1e9
            self._attributes[attrs.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = seconds
        self._finish(how, None, usage=usage)

    def failed(self, exc: BaseException) -> None:
        """The call failed: a transport error, a cancellation. No tokens are counted for it."""
        self._finish("cancelled" if isinstance(exc, asyncio.CancelledError) else "failed", exc)

    def _finish(
        self, outcome: str, exc: BaseException | None, *, usage: Usage | None = None, error_type: str | None = None
    ) -> None:
        if outcome == "failed":
            self._attributes[attrs.STATUS] = "failed"
        live = self._live
        if live is not None:
            if live.ended:
                return
            if usage is not None:
                live.add_usage(usage)
            for key, value in self._attributes.items():
                live.set_attribute(key, value)
            if self.chunk_ends:
                live.add_chunk_ends(self.chunk_ends)
            if self._own:
                live.finish(exc, outcome=outcome, error_type=error_type)
            elif error_type is not None:  # the enclosing interaction goes on: say what this call did
                live.set_attribute(attrs.ERROR_TYPE, error_type)
        else:
            session, context = self._session, self._context
            assert session is not None
            assert context is not None
            found = usage if usage is not None else Usage()
            emit_interaction(
                self._runtime,
                "chat",
                session,
                model=self._model,
                provider=self._provider,
                metadata=None,
                extra=self._attributes,
                usage=found,
                outcome=outcome,
                exc=exc,
                start_ns=self._start_wall_ns,
                end_ns=time.time_ns(),
                links=self._links,
                pinned=context,
                parent=self._parent,
                # The values: cleaned names, a host, a port, flags, seconds, a JSON string.
                plain=True,
                operation=self._operation,
                error_type=error_type,
                chunk_ends=self.chunk_ends,
            )
            note_app_chat(found.response_id)
        if usage is not None and usage.reported:
            _remember(self.span_id, self._model, usage)

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


def _content_headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """An answer's ``Content-Type`` and ``Content-Encoding`` (``b""`` when absent) from its raw
    header pairs, in one pass, as the bytes the inspectors take; a repeated one joined with
    ``", "`` as ``Headers.get`` joins it (two ``Headers.get`` calls and their text round trip
    cost ~1.5k instructions more a call)."""
    kind = encoding = b""
    for name, value in headers:
        if len(name) not in (12, 16):  # len("content-type"), len("content-encoding")
            continue
        lowered = name.lower()
        if lowered == b"content-type":
            kind = kind + b", " + value if kind else value
        elif lowered == b"content-encoding":
            encoding = encoding + b", " + value if encoding else value
    return kind, encoding


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
    current = trace.get_current_span()
    enclosing = current_recording()
    if (
        enclosing is not None
        and enclosing.interaction_type == "chat"
        and not enclosing.captured
        and not enclosing.ended
    ):
        enclosing.captured = True  # this call fills it; a next one inside it is one of its own
        call = CapturedCall(runtime, stream=stream, cap=cap, live=enclosing, own=False)
        _mark_foreign(current, call.span_id)
        return call
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
    provider = endpoint.provider or runtime.prices.provider(model)  # the host's, else the model's
    if session is None:  # no session: a live span under whatever is current, as any other
        live = Recording(
            runtime,
            "chat",
            session=None,
            model=model,
            provider=provider,
            operation=endpoint.operation,
            attributes=extra,
        )
        if messages is not None:
            live.record_content(input_messages=messages)
        call = CapturedCall(runtime, stream=stream, cap=cap, live=live)
    else:
        if messages is not None and settings.capture_content:
            extra[attrs.GEN_AI_INPUT_MESSAGES] = json.dumps(messages, default=str)
        call = CapturedCall(
            runtime,
            stream=stream,
            cap=cap,
            session=session,
            model=model,
            provider=provider,
            operation=endpoint.operation,
            attributes=extra,
            current=current,
        )
    _mark_foreign(current, call.span_id)
    return call


def _request(content: bytes | None, cap: int, with_content: bool) -> tuple[str | None, bool, Any]:
    """The requested model, whether it streams, and (with content capture on) its messages."""
    if not content or len(content) > cap:
        return None, False, None
    values = top_level(content, _REQUEST_KEYS_WITH_CONTENT if with_content else _REQUEST_KEYS)
    if values is None:
        return None, False, None
    model = clean(values[0]) if isinstance(values[0], str) and 0 < len(values[0]) <= 256 else None
    messages = None
    if with_content:
        messages = values[2] if values[2] is not None else values[3]
    return model, values[1] is True, messages


def _mark_foreign(current: trace.Span, span_id: int) -> None:
    """Under another instrumentation's GenAI span (an SDK's own): name the span that counts the
    call on it, for the join processor to move its usage counts at its end."""
    if not current.is_recording():
        return
    scope = getattr(current, "instrumentation_scope", None)
    if scope is not None and getattr(scope, "name", None) == INSTRUMENTATION_SCOPE:
        return
    found = getattr(current, "attributes", None) or {}
    if attrs.GEN_AI_OPERATION_NAME in found or attrs.GEN_AI_PROVIDER_NAME in found:
        current.set_attribute(attrs.COUNTED_IN, format(span_id, "016x"))


# --- track_interaction of a captured call -------------------------------------------------------------
# Captured calls of the running context not yet claimed by a track_interaction of the same call:
# (span id, response id, models, input tokens, output tokens). A few, newest last.
_recent: ContextVar[deque[tuple[int, str | None, frozenset[str], int | None, int | None]] | None] = ContextVar(
    "otel_analytics_captured", default=None
)


def _remember(span_id: int, model: str | None, usage: Usage) -> None:
    recent = _recent.get()
    if recent is None:
        recent = deque(maxlen=16)
        _recent.set(recent)
    models = frozenset(name for name in (model, usage.response_model) if name)
    recent.append((span_id, usage.response_id, models, usage.input_tokens, usage.output_tokens))


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
