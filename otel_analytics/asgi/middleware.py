"""``AnalyticsMiddleware``: one line gives an ASGI chat backend per-conversation analytics.

Pure ASGI, with a fresh per-request object (:class:`_Exchange`) that owns all request state;
nothing about a request is stored on the middleware. For a request that a route rule marks:

- A JSON request body is read ahead up to the inspection cap (for the session id and the
  requested model), unless its ``Content-Length`` says it is larger, and replayed to the app
  message for message, so the app receives exactly the same messages.
- The interaction span starts before the app runs; the session is set in context for the app, so
  ``oa.*`` calls inside it join the conversation.
- Every response message is forwarded first, unchanged and at once; only then is a bounded copy
  handed to an incremental JSON/SSE inspector. The span ends with the last body message, or when
  the client disconnects (recorded as such).
- Chat interactions the app records itself while handling a chat request are noted in the
  request's state (``context.app_chats``); the middleware records no interaction of its own for
  the request when they already count the exchange. The first of them takes the span id the
  request's span already links to, so that link never points at a span that is not recorded.
- Exceptions from the app mark the span and propagate unchanged; errors inside analytics are
  logged once and swallowed. Other requests and WebSocket scopes pass straight through; lifespan
  messages too, analytics being flushed before the app's word that its shutdown is over.

HTTP server spans: an app already instrumented (an outer OpenTelemetry middleware, or the
FastAPI/Starlette instrumentors, including through ``opentelemetry-instrument``) keeps its own;
otherwise ``opentelemetry-instrumentation-asgi``'s middleware is applied around the analytics
layer with its per-message send/receive spans off. Either way the server span and the interaction
span are linked both ways (they live in different traces: the request's and the session's).
"""

from __future__ import annotations

import asyncio
import logging
import random
import string
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext

from .. import attributes as attrs
from .. import configuration as _configuration
from .. import runtime as _runtime
from .._guard import report_internal_error, warn_once
from .._json import top_level
from .._text import clean
from ..answers import Inspector, inspector_for
from ..configuration import ensure_configured, flush_before_exit
from ..context import ANONYMOUS_USER, SessionRef, app_chats, current_session
from ..finished_spans import NOT_SAMPLED, SAMPLED, add_link
from ..recording import emit_interaction, metadata_json
from ..runtime import Runtime
from ..sessions import end_session, start_session
from ..usage import Usage
from .diagnostics import Diagnostics
from .rules import DEFAULT_RULES, RouteRule, match
from .server_span import with_server_span

# The ASGI types as Starlette and asgiref write them, so that a Starlette or FastAPI app (and any
# app typed like one) is an ASGIApp to a type checker.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
UserIdGetter = Callable[[Scope], "str | None"]
SessionIdGetter = Callable[[Scope], "str | None"]

_logger = logging.getLogger("otel_analytics")
_CHUNKS_PER_READ = 32  # at most this many response chunks are held before the inspector reads them
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_SESSION_KEYS = ("conversationId", "conversation_id", "session_id", "sessionId")
_BODY_KEYS = ("model", "stream", *_SESSION_KEYS)  # all that is read of a request body
_QUERY_KEYS = {"conversationId", "conversation_id", "session_id"}
# Set in the scope of a request an analytics layer records: a second layer inside it (an app
# instrumented twice, a sub-app instrumented and mounted in an instrumented app) passes it
# through, so its interaction, tokens and cost are counted once.
_RECORDED = "otel_analytics.recorded"
_CHATS = frozenset({"chat", "auto"})  # kinds whose requests the app's own chats may count
_READ_ANSWER = frozenset({"chat", "session_start", "auto"})


_OS_RANDOM = random.SystemRandom()  # not the random module: an app's random.seed() would repeat ids


def _fallback_session_id() -> str:
    """The existing integration's fallback: ``session-<ms>-<9 base36 chars>``."""
    suffix = "".join(_OS_RANDOM.choices(string.ascii_lowercase + string.digits, k=9))
    return f"session-{int(time.time() * 1000)}-{suffix}"


def _text(value: Any) -> str | None:
    """An id or a name the contract can store: 1 to 256 characters, valid Unicode."""
    return clean(value) if isinstance(value, str) and 0 < len(value) <= 256 and not value.isspace() else None


def _user_of(scope: Scope) -> str | None:
    """A user id from ``scope["user"]`` (Starlette's AuthenticationMiddleware and the like)."""
    user = scope.get("user")
    if user is None:
        return None
    if isinstance(user, Mapping):
        return _text(str(user.get("id") or user.get("_id") or "")) or None
    for attribute in ("id", "_id", "identity"):
        try:
            value = getattr(user, attribute, None)
        except Exception:  # Starlette's BaseUser.identity raises NotImplementedError
            value = None
        if value is not None and not callable(value):
            return _text(str(value))
    if getattr(user, "is_authenticated", False):
        return _text(getattr(user, "display_name", None))
    return None


class AnalyticsMiddleware:
    """Wrap an ASGI app: ``app = AnalyticsMiddleware(app)``.

    Args:
        app: the ASGI application.
        rules: route rules (default: ``ANALYTICS_ROUTES``, else LibreChat-shaped defaults).
        user_id: a callable ``scope -> user id | None`` tried before ``scope["user"]`` and the header.
        session_id: a callable ``scope -> session id | None`` tried before the body, path, query and
            header (a cookie, say); a session start's answer still names its session first.
        user_header: request header with the user id (default ``ANALYTICS_USER_HEADER``, x-user-id).
        session_header: request header with the session id (``ANALYTICS_SESSION_HEADER``, x-session-id).
        server_span: ``None`` (auto), ``True`` (always add the HTTP server span), ``False`` (never).
        inspect_bytes: most bytes of one body, request or response, read (``ANALYTICS_INSPECT_BYTES``, 1 MiB).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        rules: tuple[RouteRule, ...] | list[RouteRule] | None = None,
        user_id: UserIdGetter | None = None,
        session_id: SessionIdGetter | None = None,
        user_header: str | None = None,
        session_header: str | None = None,
        server_span: bool | None = None,
        inspect_bytes: int | None = None,
    ) -> None:
        self.app = app
        self._rules = tuple(rules) if rules is not None else None
        self._user_id_of = user_id
        self._session_id_of = session_id
        self._user_header = user_header.lower().encode() if user_header else None
        self._session_header = session_header.lower().encode() if session_header else None
        self._server_span = server_span
        self._inspect_bytes = inspect_bytes
        self._with_server_span: tuple[object, ASGIApp] | None = None
        self._metadata: dict[tuple[str, str], str] = {}
        # Matches are shared by every request of a route: their params are read-only (Mapping).
        self._matches: dict[tuple[str, str], tuple[RouteRule, Mapping[str, str]] | None] = {}
        self._matched_rules: tuple[RouteRule, ...] = ()
        self._headers_read: tuple[object, bytes, bytes] = (None, b"", b"")
        self.diagnostics = Diagnostics()

    def match(self, rules: tuple[RouteRule, ...], method: str, path: str) -> tuple[RouteRule, Mapping[str, str]] | None:
        """The rule a request falls under, remembered per route (bounded: paths can carry ids)."""
        if rules is not self._matched_rules:  # new settings: forget what the old rules said
            self._matches, self._matched_rules = {}, rules
        matches = self._matches
        key = (method, path)
        try:
            return matches[key]
        except KeyError:
            pass
        found = match(rules, method, path)
        if len(matches) >= 1024:
            matches.clear()
        matches[key] = found
        return found

    def metadata_for(self, scope: Scope) -> str:
        """The interaction's metadata (``{"endpoint", "method"}``), encoded once per route."""
        key = (scope.get("method", ""), scope.get("path", ""))
        found = self._metadata.get(key)
        if found is None:
            if len(self._metadata) >= 1024:
                self._metadata.clear()  # bounded: paths can carry ids
            found = self._metadata[key] = metadata_json({"endpoint": key[1], "method": key[0]})
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _RECORDED in scope:
            if scope["type"] == "lifespan":  # forwarded unchanged; the server's stop flushes first
                await self.app(scope, receive, _lifespan_send(send))
                return
            await self.app(scope, receive, send)  # websocket, recorded outside: untouched
            return
        if _configuration._active is None:
            ensure_configured()  # the one line is enough: configured from the environment
        runtime = _runtime.current()
        if not runtime.settings.enabled:
            self.diagnostics.disabled()
            await self.app(scope, receive, send)
            return
        # The span current on arrival, read once: the server span the exchange links to, if any
        # (not read when a server span is always added: the exchange reads that one).
        current = None if self._server_span else trace.get_current_span()
        if current is None or self._needs_server_span(current):
            await self._server_span_app(runtime)(scope, receive, send)
            return
        exchange = self._exchange(runtime, scope, current)  # inline, not through _analytics: a coroutine fewer
        if exchange is None:
            await self.app(scope, receive, send)
        else:
            await exchange.run(receive, send)

    def _needs_server_span(self, current: trace.Span) -> bool:
        if self._server_span is not None:
            return self._server_span
        if current.get_span_context().is_valid:
            return False  # an outer instrumentation made the server span
        return not _instrumented(self.app)

    def _server_span_app(self, runtime: Runtime) -> ASGIApp:
        cached = self._with_server_span
        if cached is not None and cached[0] is runtime.provider:
            return cached[1]
        try:
            wrapped: ASGIApp = with_server_span(self._analytics, runtime.provider, runtime.settings.redact_query_params)
        except ImportError:
            warn_once(
                "asgi:contrib",
                "otel-analytics: no HTTP server span (install 'otel-analytics[asgi]' for "
                "one); analytics spans are recorded all the same.",
            )
            wrapped = self._analytics
        self._with_server_span = (runtime.provider, wrapped)
        return wrapped

    async def _analytics(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The analytics layer alone: the app that the added HTTP server span wraps."""
        exchange = self._exchange(_runtime.current(), scope, trace.get_current_span())
        if exchange is None:
            await self.app(scope, receive, send)
        else:
            await exchange.run(receive, send)

    def _exchange(self, runtime: Runtime, scope: Scope, server: trace.Span) -> _Exchange | None:
        """The state of a request that a rule marks for analytics; ``None``: pass it through.
        ``server``: the span current when the request reached us (its HTTP server span, if any)."""
        self.diagnostics.request()
        rules = self._rules if self._rules is not None else (runtime.settings.routes or DEFAULT_RULES)
        method, path = scope.get("method", "GET"), scope.get("path", "/")
        found = self.match(rules, method, path)
        if found is None and scope.get("root_path"):
            # Served under a prefix (uvicorn --root-path behind a proxy, a Starlette Mount): the
            # path includes it, and rules name the app's own routes, as the app's router reads them.
            route_path = _route_path(path, scope["root_path"])
            if route_path is not None:
                found = self.match(rules, method, route_path)
        if found is None or found[0].kind == "ignore":
            return None  # another layer inside, with other rules, may record it
        scope[_RECORDED] = True
        return _Exchange(self, runtime, scope, found[0], found[1], server)

    def headers_read(self, runtime: Runtime) -> tuple[bytes, bytes]:
        """The user and session header names, lower-case bytes (resolved once per settings)."""
        cached = self._headers_read
        if cached[0] is not runtime.settings:
            user = self._user_header or runtime.settings.user_header.lower().encode()
            session = self._session_header or runtime.settings.session_header.lower().encode()
            cached = self._headers_read = (runtime.settings, user, session)
        return cached[1], cached[2]

    def inspect_bytes(self, runtime: Runtime) -> int:
        return self._inspect_bytes or runtime.settings.inspect_bytes


_SHUTDOWN_OVER = frozenset({"lifespan.shutdown.complete", "lifespan.shutdown.failed"})


def _lifespan_send(send: Send) -> Send:
    """The lifespan ``send``, its messages forwarded unchanged. Once the app's startup is over,
    analytics is configured from the environment if the app did not configure it (the one line is
    enough). Before the app's word that its shutdown is over reaches the server, analytics is
    flushed (bounded by the flush timeout, on a worker thread: the loop keeps running): a server
    stopped by SIGTERM exits right after, and uvicorn re-raises the signal, so ``atexit`` never runs."""

    async def lifespan_send(message: Message) -> None:
        kind = message.get("type") if type(message) is dict else None
        if kind == "lifespan.startup.complete":
            try:
                ensure_configured()
            except Exception as error:
                report_internal_error("asgi.lifespan", error)
        elif kind in _SHUTDOWN_OVER:
            try:
                import anyio.to_thread  # asyncio or trio, whichever the server runs

                await anyio.to_thread.run_sync(flush_before_exit)
            except Exception as error:
                report_internal_error("asgi.lifespan", error)
        await send(message)

    return lifespan_send


def _route_path(path: str, root_path: str) -> str | None:
    """The path without the prefix the app is served under, as Starlette's router reads it;
    ``None`` when the path is not under that prefix."""
    if type(path) is not str or type(root_path) is not str or not path.startswith(root_path):
        return None
    rest = path[len(root_path) :]
    if not rest:
        return "/"
    return rest if rest[0] == "/" else None  # /chatty is not under /chat


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


def _instrumented(app: Any) -> bool:
    """Whether the app makes its own server span (FastAPI/Starlette instrumentors, contrib's middleware)."""
    if getattr(app, "_is_instrumented_by_opentelemetry", False) is True:
        return True
    return type(app).__name__ == "OpenTelemetryMiddleware"


class _Exchange:
    """One request/response: all of its state, and the interaction or session event it records."""

    # Slots: a request's state is ~30 fields; an instance dict grew (and was resized) to hold them.
    __slots__ = (
        "_app_chat_count",
        "_app_response_ids",
        "_body_sessions",
        "_chunk_ends",
        "_content_length",
        "_disconnected",
        "_done",
        "_final_at",
        "_first_chunk_at",
        "_header_session",
        "_header_user",
        "_inspector",
        "_json_body",
        "_linked",
        "_links",
        "_metadata",
        "_middleware",
        "_pending",
        "_pinned",
        "_provider",
        "_receive",
        "_request_model",
        "_rule",
        "_runtime",
        "_scope",
        "_send",
        "_server",
        "_session",
        "_session_id",
        "_start_ns",
        "_status",
        "_stream",
        "_unread",
        "_user_id",
        "params",
    )

    def __init__(
        self,
        middleware: AnalyticsMiddleware,
        runtime: Runtime,
        scope: Scope,
        rule: RouteRule,
        params: Mapping[str, str],
        server: trace.Span,
    ) -> None:
        self._middleware = middleware
        self._server = server
        self._runtime = runtime
        self._scope = scope
        self._rule = rule
        self.params = params
        self._pending: list[Message] = []
        self._links: tuple[Link, ...] = ()  # the span keeps this tuple: no list, no copy
        self._start_ns = 0
        # The interaction's context, linked to in advance, in a list taken from once (pop()):
        # the app's chats, on threads of their own, may take it as the request ends (a lock
        # cost ~2.5k instructions a request, the list ~0.4k).
        self._pinned: list[SpanContext] | None = None
        self._provider: str | None = None
        self._metadata: str | None = None
        self._inspector: Inspector | None = None
        self._unread: list[bytes] | None = None  # chunks passed on, not yet handed to the inspector
        self._status = 0
        self._disconnected = False
        self._done = False
        self._final_at: int | None = None
        self._first_chunk_at = 0  # -1: a stream's first chunk is awaited; then when it was sent
        self._chunk_ends: list[int] | None = None  # when each chunk was sent, for the metrics
        self._linked = True
        self._body_sessions: tuple[Any, ...] = ()  # the body's values of _SESSION_KEYS
        self._request_model: str | None = None
        self._stream = False
        self._session: SessionRef | None = None
        self._session_id: str | None = None
        self._user_id = ANONYMOUS_USER
        self._json_body = False
        self._content_length: bytes | None = None  # as the client declared it, read if needed
        self._header_user: str | None = None
        self._header_session: str | None = None
        self._app_chat_count = 0  # the chat interactions the app records itself (note_app_chat)
        self._app_response_ids: set[str] | None = None

    async def run(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        try:
            self._read_headers()
        except Exception as error:  # headers that are not bytes: analytics reads none of them
            report_internal_error("asgi.headers", error)
        if self._json_body and self._scope.get("method") in _BODY_METHODS:
            # Read a JSON request body before the app runs (which waits for all of it anyway, to
            # parse it); the app gets the same messages.
            cap = self._middleware.inspect_bytes(self._runtime)
            if not self._declared_over(cap):
                message = await self._receive()
                self._pending.append(message)
                if type(message) is not dict:
                    pass  # not an ASGI message: the app gets it as it is, analytics reads nothing
                elif message.get("type") == "http.request" and not message.get("more_body", False):
                    self._read_body(message.get("body", b""), cap)  # all in one message: the common case
                else:
                    await self._read_ahead(message, cap)
        try:
            self._start()
        except Exception as error:
            report_internal_error("asgi.start", error)
        token = current_session.set(self._session) if self._session is not None else None
        chats_token = app_chats.set(self) if token is not None and self._rule.kind in _CHATS else None
        try:
            await self._middleware.app(self._scope, self._replay_receive, self._forward_send)
        except BaseException as exc:
            self._end(exc)
            raise
        finally:
            if chats_token is not None:
                app_chats.reset(chats_token)
            if token is not None:
                current_session.reset(token)
            self._end(None)

    # --- request -------------------------------------------------------------------------------
    async def _read_ahead(self, message: Message, cap: int) -> None:
        """Read the rest of a JSON request body sent in several messages, up to ``cap`` bytes."""
        size = 0
        parts: list[bytes] = []
        while True:
            if type(message) is not dict or message.get("type") != "http.request":
                self._disconnected = type(message) is dict and message.get("type") == "http.disconnect"
                return
            chunk = message.get("body", b"")
            if type(chunk) is not bytes:
                return  # not what ASGI sends: passed on to the app as it is, unread
            size += len(chunk)
            if size > cap:
                return  # large: the rest flows to the app live, and we don't parse it
            parts.append(chunk)
            if not message.get("more_body", False):
                break
            message = await self._receive()
            self._pending.append(message)
        self._read_body(b"".join(parts), cap)

    def _declared_over(self, cap: int) -> bool:
        """Whether the client declared a body larger than ``cap``: one that would not be read.
        Waiting for its first ``cap`` bytes anyway would hold up an app that answers on the
        headers alone (a 401, a 413, an ``Expect: 100-continue`` it declines)."""
        declared = self._content_length
        if type(declared) is not bytes or not declared.isdigit():
            return False  # none, or not a length: read as before (the server decides what it is)
        return len(declared) > 18 or int(declared) > cap  # int() refuses 4,300 digits and more

    def _read_body(self, body: bytes, cap: int) -> None:
        """The request's model, stream flag and session id (read later), from a JSON body."""
        if type(body) is not bytes or not body or len(body) > cap:
            return  # nothing, too much, or not what ASGI sends (passed on to the app as it is)
        values = top_level(body, _BODY_KEYS)  # the rest (the messages) is checked, never built
        if values is not None:
            self._request_model = _text(values[0])
            self._stream = values[1] is True
            self._body_sessions = values[2:]

    async def _replay_receive(self) -> Message:
        if self._pending:
            return self._pending.pop(0)
        message: Message = await self._receive()
        if type(message) is dict and message.get("type") == "http.disconnect":
            self._disconnected = True
        return message  # anything else as it is: what the app makes of it is its own business

    def _start(self) -> None:
        scope, runtime = self._scope, self._runtime
        getter = self._middleware._user_id_of
        user = None
        if getter is not None:
            try:
                user = _text(getter(scope))
            except Exception:
                warn_once("asgi:user_id", "otel-analytics: the user_id callable raised; using the next source.")
        self._user_id = user or _user_of(scope) or self._header_user or ANONYMOUS_USER
        self._session_id = self._session_from_request(self._header_session)
        kind = self._rule.kind
        if kind != "auto" or self._session_id is not None:
            self._middleware.diagnostics.conversation()
        if kind in ("session_start", "session_end"):
            return
        if self._session_id is None:
            if kind == "auto":
                return  # no session named: not a conversation's request
            self._session_id = _fallback_session_id()
        self._session = SessionRef.of(self._session_id, self._user_id)
        self._start_ns = time.time_ns()
        if kind == "chat":
            self._provider = runtime.prices.provider(self._request_model)
        self._metadata = self._middleware.metadata_for(scope)
        server = self._server
        outer = server.get_span_context()
        if kind == "auto":
            # Recorded only if the answer shows usage (no captured call of its own): the request's
            # span is linked from the interaction when there is one, not in advance.
            if outer.is_valid and outer.trace_id != self._session.trace_id:
                self._links = (Link(outer),)
        elif outer.is_valid:
            self._link_request_span(server, outer)
        else:
            self._linked = False  # an app instrumented inside us makes its server span later

    def _read_headers(self) -> None:
        """The request headers analytics reads, in one pass: content type, user and session."""
        user_header, session_header = self._middleware.headers_read(self._runtime)
        for name, value in self._scope.get("headers", ()):
            if name == b"content-type":
                self._json_body = value == b"application/json" or _is_json(value)
            elif name == b"content-length":
                self._content_length = value
            elif name == user_header:
                self._header_user = _text(value.decode("latin-1"))
            elif name == session_header:
                self._header_session = _text(value.decode("latin-1"))

    def _session_from_request(self, header_session: str | None) -> str | None:
        getter = self._middleware._session_id_of
        if getter is not None:
            try:
                found = _text(getter(self._scope))
            except Exception:
                found = None
                warn_once("asgi:session_id", "otel-analytics: the session_id callable raised; using the next source.")
            if found:
                return found
        for value in self._body_sessions:
            found = _text(value)
            if found:
                return found
        found = RouteRule.session_from(self.params)
        if found:
            return _text(found)
        query = self._scope.get("query_string", b"")
        if query:
            from urllib.parse import parse_qsl

            for key, value in parse_qsl(query.decode("latin-1")):
                if key in _QUERY_KEYS and _text(value):
                    return str(value)
        return header_session

    # --- response ------------------------------------------------------------------------------
    async def _forward_send(self, message: Message) -> None:
        try:
            await self._send(message)  # forward first: the client never waits for analytics
        except OSError:
            self._disconnected = True
            self._end(None)
            raise
        try:
            # The body messages of a stream, inline: this runs once per chunk.
            if message["type"] == "http.response.body":
                unread = self._unread
                if unread is not None:
                    body = message.get("body")
                    if body:
                        if self._first_chunk_at < 0:
                            self._first_chunk_at = time.time_ns()
                        ends = self._chunk_ends
                        if ends is not None:
                            ends.append(time.monotonic_ns())
                        # Handed to the inspector in groups: a C append per chunk, a call per group
                        # (a call per chunk was a third of what the middleware added to each).
                        unread.append(body)
                        if len(unread) >= _CHUNKS_PER_READ:
                            self._read_unread()
                if not message.get("more_body", False):
                    self._last_body()
            else:
                self._observe(message)
        except Exception as error:
            report_internal_error("asgi.response", error)

    def _inspected(self) -> tuple[Usage | None, Any]:
        """What the inspector read; nothing (the interaction is still recorded) if it failed."""
        if self._inspector is None:
            return None, None
        try:
            self._read_unread()
            return self._inspector.result()
        except Exception as error:
            report_internal_error("asgi.response", error)
            return None, None

    def _read_unread(self) -> None:
        unread = self._unread
        if self._inspector is not None and unread:
            try:
                self._inspector.feed_many(unread)
            finally:
                unread.clear()  # read or not, never held: a failing inspector must not pile chunks up

    def _last_body(self) -> None:
        if self._status >= 500:
            # A server error page may be followed by the exception itself (Starlette's
            # ServerErrorMiddleware): end when the app returns, timed to now.
            self._final_at = time.time_ns()
        else:
            self._end(None)

    def _observe(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._status = message["status"]
            content_type = content_encoding = b""
            for name, value in message.get("headers", ()):
                name = name.lower()
                if name == b"content-type":
                    content_type = value
                elif name == b"content-encoding":
                    content_encoding = value
            if self._rule.kind in _READ_ANSWER and (self._session is not None or self._rule.kind != "auto"):
                self._inspector = inspector_for(
                    content_type,
                    content_encoding,
                    self._middleware.inspect_bytes(self._runtime),
                    document=self._rule.kind == "session_start",
                )
                if self._inspector is not None:
                    self._unread = []
                    if content_type.startswith(b"text/event-stream"):  # a stream: timed by its chunks
                        self._first_chunk_at = -1
                        if self._runtime.metrics is not None:
                            self._chunk_ends = []
            if not self._linked:
                self._linked = True
                server = trace.get_current_span()
                context = server.get_span_context()
                if context.is_valid:
                    self._link_request_span(server, context)

    def _link_request_span(self, server: trace.Span, request: SpanContext) -> None:
        """Link the request's server span (another trace) and the interaction both ways."""
        session = self._session
        if session is None or request.trace_id == session.trace_id:
            return
        runtime = self._runtime
        finished = runtime.finished
        self._links = (finished.link(request) if finished is not None else Link(request),)  # linked once
        if runtime.can_pin_ids and not self._app_chat_count and server.is_recording():
            # The interaction span is built when the request ends: fix its context now to point
            # at it (the span then keeps this very object as its own context). Not once the app
            # has recorded chats (linked back already): the middleware may defer to them.
            flags = SAMPLED if runtime.session_sampled(session.trace_id) else NOT_SAMPLED
            pinned = SpanContext(session.trace_id, runtime.new_span_id(), False, flags)
            self._pinned = [pinned]
            add_link(server, pinned)
            server.set_attribute(attrs.REQUEST_SESSION_ID, session.session_id)

    def _end(self, exc: BaseException | None) -> None:
        """Record the outcome once: on the last body message, a disconnect, an error or return."""
        if self._done:
            return
        self._done = True
        try:
            self._record(exc)
        except Exception as error:
            report_internal_error("asgi.end", error)

    def _record(self, exc: BaseException | None) -> None:
        usage, document = self._inspected()
        kind = self._rule.kind
        if kind == "session_start":
            self._session_started(document)
            return
        if kind == "session_end":
            if 200 <= self._status < 300 and self._session_id:
                end_session(self._session_id, self._user_id)
            return
        session = self._session
        if kind == "chat" and session is not None:
            answered_usage = self._app_chat_count > 0 or (usage is not None and usage.reported)
            self._middleware.diagnostics.chat_answered(f"{self._rule.method} {self._rule.path}", answered_usage)
        if session is None or self._recorded_by_app(usage):
            return
        if kind == "auto":
            if usage is None or not usage.reported:
                return  # a conversation's request that used no model, or one captured already
            kind = "chat"
            self._provider = self._runtime.prices.provider(usage.response_model or self._request_model)
        box = self._pinned
        try:
            pinned = box.pop() if box else None  # unless the app's chat took it
        except IndexError:  # taken meanwhile, on another thread
            pinned = None
        extra: dict[str, Any] = {attrs.GEN_AI_REQUEST_STREAM: True} if self._stream else {}
        if self._first_chunk_at > 0 and kind == "chat":
            extra[attrs.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = (self._first_chunk_at - self._start_ns) / 1e9
        if self._status >= 400:
            extra[attrs.STATUS] = "failed"
            extra[attrs.ERROR_TYPE] = str(self._status)
        if exc is not None:
            outcome = "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed"
        elif self._disconnected:
            outcome = "disconnected"
        elif self._status == 0:
            outcome = "failed"  # the app returned without answering
        else:
            outcome = "completed"
        emit_interaction(
            self._runtime,
            kind,
            session,
            model=self._request_model if kind == "chat" else None,
            provider=self._provider,
            metadata=self._metadata,
            extra=extra,
            usage=usage if usage is not None else Usage(),
            outcome=outcome,
            exc=exc,
            start_ns=self._start_ns,
            end_ns=self._final_at or time.time_ns(),
            links=self._links,
            pinned=pinned,
            plain=True,  # every value above is a str, int, bool or float made here, or read by _text
            chunk_ends=self._chunk_ends,
        )

    def _recorded_by_app(self, usage: Usage | None) -> bool:
        """Whether the app recorded this exchange as chat interactions of its own (around its LLM
        call, say): then a record of the request would count it again. So when the answer showed
        no token counts, or showed the very response (its id) the app recorded, the app's records
        stand alone; counts of another response are kept, as they may be another call's."""
        if not self._app_chat_count:
            return False
        if usage is None or not usage.reported:
            return True
        ids = self._app_response_ids
        return ids is not None and usage.response_id in ids

    def note_app_chat(self, response_id: str | None) -> None:
        """The app recorded a chat interaction while handling this request (``context.AppChats``)."""
        self._app_chat_count += 1
        if response_id:
            ids = self._app_response_ids
            if ids is None:
                self._app_response_ids = {response_id}
            elif len(ids) < 64:  # bounded: a request records a handful
                ids.add(response_id)

    def claim_request_link(self, session: SessionRef) -> SpanContext | None:
        """The context the request's span links to (``context.AppChats``), given to the first
        chat the app records in the same session: the middleware's own record, if it makes one,
        gets an id of its own (and links to the request's span, one way)."""
        pinned = self._pinned
        try:
            if pinned and pinned[0].trace_id == session.trace_id:
                return pinned.pop()  # the one context in it, unless taken since: then IndexError
        except IndexError:
            pass
        return None

    def _session_started(self, document: Any) -> None:
        if not 200 <= self._status < 300:
            return
        session_id = None
        if isinstance(document, dict):
            for key in (*_SESSION_KEYS, "id"):
                session_id = _text(document.get(key))
                if session_id:
                    break
        session_id = session_id or self._session_id
        if session_id:
            start_session(session_id, self._user_id, metadata={"endpoint": self._scope.get("path", "")})


def instrument_app(app: Any, **options: Any) -> Any:
    """Add analytics to an app: Starlette/FastAPI get it as middleware, others are wrapped.

    Returns the app to serve (the same object for Starlette and FastAPI).
    """
    add_middleware = getattr(app, "add_middleware", None)
    if callable(add_middleware):
        add_middleware(AnalyticsMiddleware, **options)
        return app
    return AnalyticsMiddleware(app, **options)
