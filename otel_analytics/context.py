"""Which session the running code belongs to, carried in a contextvar.

``asyncio`` copies contextvars into every task it creates, so tasks started inside a session
belong to it too; threads started with ``contextvars.copy_context().run`` likewise.
"""

from __future__ import annotations

import functools
from contextvars import ContextVar
from typing import NamedTuple, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanContext

from ._text import clean
from .ids import session_root_span_id, session_trace_id
from .runtime import Runtime

ANONYMOUS_USER = "anonymous"
"""The user id of interactions whose user is unknown (the tracker requires one)."""


class SessionRef(NamedTuple):
    """A session as seen by the code running inside it (a tuple: cheap to make per request)."""

    session_id: str
    user_id: str
    trace_id: int
    root_span_id: int

    @staticmethod
    def of(session_id: str, user_id: object) -> SessionRef:
        if not isinstance(user_id, str):  # an API caller's number, say: its text
            user_id = None if user_id is None else str(user_id)
        return _session_ref(session_id, user_id or ANONYMOUS_USER)


@functools.lru_cache(maxsize=4096)
def _session_ref(session_id: str, user_id: str) -> SessionRef:
    """A session, remembered (a tuple: read-only, so shared): a conversation's requests reuse it,
    its ids derived once, where making it anew cost each request ~4k instructions."""
    session_id, user_id = clean(session_id), clean(user_id)  # ids from outside: storable everywhere
    return SessionRef(session_id, user_id, session_trace_id(session_id), session_root_span_id(session_id))


current_session: ContextVar[SessionRef | None] = ContextVar("otel_analytics_session", default=None)


class AppChats(Protocol):
    """Told of the chat interactions an app records itself while the middleware handles one of
    its chat requests (around its LLM call, say): the middleware's record of that request defers
    to them when it would only count the same exchange again, and the first of them takes the
    span id the request's span already links to (``claim_request_link``)."""

    def note_app_chat(self, response_id: str | None) -> None: ...

    def claim_request_link(self, session: SessionRef) -> SpanContext | None: ...


app_chats: ContextVar[AppChats | None] = ContextVar("otel_analytics_app_chats", default=None)
"""Set by the middleware around the app while it handles a chat request."""


def note_app_chat(response_id: str | None) -> None:
    """Tell the middleware handling the current request, if any, of a chat the app recorded."""
    chats = app_chats.get()
    if chats is not None:
        chats.note_app_chat(response_id)


def claim_request_link(session: SessionRef) -> SpanContext | None:
    """The context the request's span already links to as its interaction, for a chat the app
    records to take as its own (once): should the middleware defer to the app's records, that
    link still points at a span that exists. None outside a chat request, or when taken."""
    chats = app_chats.get()
    return chats.claim_request_link(session) if chats is not None else None


def resolve_session(session_id: str | None, user_id: str | None) -> SessionRef | None:
    """The session an interaction belongs to: explicit ids first, then the context's."""
    ambient = current_session.get()
    if session_id is None:
        if ambient is None:
            return None
        if user_id is None or user_id == ambient.user_id:
            return ambient
        return SessionRef(ambient.session_id, clean(user_id), ambient.trace_id, ambient.root_span_id)
    if ambient is not None and ambient.session_id == session_id:
        return ambient if user_id in (None, ambient.user_id) else SessionRef.of(session_id, user_id)
    return SessionRef.of(session_id, user_id)


def session_parent(runtime: Runtime, session: SessionRef) -> otel_context.Context:
    """A context whose current span is the session's root, so new spans join the session trace.

    The root span itself is only emitted when the session ends (possibly in another process), so
    this is a remote, non-recording stand-in. Its sampled flag is the provider's sampler's
    decision for the session's trace id: a trace-id ratio sampler keeps or drops whole sessions.
    The current context's other entries (baggage) are kept.
    """
    root = runtime.session_root(session.trace_id, session.root_span_id)
    return trace.set_span_in_context(root, otel_context.get_current())
