"""The local tracker's HTTP API: the write routes of the contract, ``/health``, the read API, OTLP.

Every error, including unknown routes and unexpected failures, answers with the contract's body
``{"error", "message", "details"}``; never a stack trace. With a token configured, every route but
``GET /health`` needs ``Authorization: Bearer <token>``; user-scoped tokens can only read their
own user's data (another user's session is "not found").
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

import orjson
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from .._text import clean_json
from ..errors import ConfigurationError
from ..pricing import PriceBook
from . import validation
from .group_commit import GroupCommit
from .otlp import ingest, parse_request, response_body
from .store import Store
from .validation import ContractError, invalid

_logger = logging.getLogger("otel_analytics.tracker")
T = TypeVar("T")
MAX_JSON_BYTES = 1 << 20
MAX_OTLP_BYTES = 8 << 20


@dataclass(frozen=True)
class Principal:
    admin: bool
    user_id: str | None = None


@dataclass
class TrackerConfig:
    db_path: str = "./analytics.db"
    token: str | None = field(default=None, repr=False)
    user_tokens: Mapping[str, str] = field(default_factory=dict, repr=False)
    """token -> user_id: tokens that read only that user's data."""
    max_json_bytes: int = MAX_JSON_BYTES
    max_otlp_bytes: int = MAX_OTLP_BYTES
    pricing_file: str | None = None
    """The client's price overrides (``ANALYTICS_PRICING_FILE``): the tracker prices as it does."""
    trace_url: str | None = None
    """The dashboard's link to a session's trace (``ANALYTICS_TRACE_URL``), ``{trace_id}`` in it
    replaced by the 32 hex digits: ``http://localhost:16686/trace/{trace_id}`` for Jaeger."""
    dashboard: bool = True
    """Serve the web dashboard at ``/`` (it needs the ``server`` extra's Jinja2)."""


def _error(code: str, message: str, status: int, **details: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, "details": details}, status_code=status)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass  # maybe still JSON to Python (integers over 64 bits, lone surrogates): same verdicts as before
    try:
        # Lone surrogates (a JavaScript client's JSON.stringify writes them as \ud800 escapes) are
        # stored as U+FFFD, as the client package stores them: SQLite holds UTF-8 only.
        return clean_json(json.loads(raw, parse_constant=_reject_constant))
    except (ValueError, RecursionError):
        raise invalid("Malformed JSON body") from None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (before reading it when declared)."""
    declared = request.headers.get("content-length")
    try:
        too_large = declared is not None and int(declared) > limit
    except ValueError:  # not a number int() reads (or 4,300 digits and more): the count below holds
        too_large = False
    if too_large:
        raise ContractError("payload_too_large", f"Request body larger than {limit} bytes", 413, limit=limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ContractError("payload_too_large", f"Request body larger than {limit} bytes", 413, limit=limit)
    return bytes(body)


_SQLITE_MAX_INTEGER = 2**63 - 1


def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    """A non-negative integer parameter within bounds (no bound given: what SQLite can bind)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    high = _SQLITE_MAX_INTEGER if high is None else high
    # ASCII digits only ("²" is a digit to str.isdigit, not to int()), and, leading zeros aside,
    # no longer than the largest bound: int() refuses over 4,300 digits, SQLite over 63 bits.
    digits = raw.lstrip("0")
    value = int(raw) if raw.isascii() and raw.isdigit() and len(digits) <= len(str(high)) else None
    if value is None or not low <= value <= high:
        raise invalid(f"Invalid {name}: must be an integer from {low} to {high}", field=name, value=raw[:64])
    return value


def _date_param(request: Request, name: str, required: bool = False) -> str | None:
    raw = request.query_params.get(name)
    if not raw:
        if required:
            raise invalid(f"Missing required parameter: {name}", field=name)
        return None
    try:
        parsed = time.strptime(raw, "%Y-%m-%d")
    except ValueError:
        raise invalid(f"Invalid {name}: must be a date YYYY-MM-DD", field=name, value=raw[:64]) from None
    if not 2000 <= parsed.tm_year < 2100:
        raise invalid(f"Invalid {name}: out of range (2000 to 2099)", field=name, value=raw)
    return raw


def _date_range(request: Request, required: bool = False) -> tuple[str | None, str | None]:
    start, end = _date_param(request, "start_date", required), _date_param(request, "end_date", required)
    if start and end and start > end:
        raise invalid("Invalid date range: start_date must be before end_date", field="start_date", value=start)
    return start, end


class TrackerApp:
    """Route handlers over one :class:`Store`."""

    def __init__(self, config: TrackerConfig, store: Store | None = None) -> None:
        self.config = config
        self.store = store or Store(config.db_path, PriceBook(config.pricing_file))
        self.writes = GroupCommit(self.store)
        self._tokens = [(token.encode(), Principal(admin=True)) for token in [config.token] if token]
        self._tokens += [
            (token.encode(), Principal(admin=False, user_id=user)) for token, user in config.user_tokens.items()
        ]

    @staticmethod
    async def blocking(work: Callable[..., T], *args: Any) -> T:
        """Run a store call, on the event loop itself: the SQLite transactions here take a few
        milliseconds, and a thread-pool hand-off waits for the GIL behind the loop's own JSON and
        validation work, which under load cost more than it saved."""
        return work(*args)

    # --- auth -------------------------------------------------------------------------------------
    def principal(self, request: Request) -> Principal:
        if not self._tokens:
            return Principal(admin=True)
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        found: Principal | None = None
        candidate = presented.strip().encode()
        for token, principal in self._tokens:  # compare with every token, in constant time each
            if hmac.compare_digest(candidate, token) and scheme.lower() == "bearer":
                found = principal
        if found is None:
            raise ContractError("unauthorized", "Missing or invalid bearer token", 401)
        return found

    def writer(self, request: Request) -> None:
        if not self.principal(request).admin:
            raise ContractError("unauthorized", "This token can only read", 401)

    def scope_user(self, request: Request, asked: str | None) -> str | None:
        """The user_id a read is limited to: the token's user, whatever was asked."""
        principal = self.principal(request)
        return asked if principal.admin else principal.user_id

    # --- write routes -----------------------------------------------------------------------------
    async def _json(self, request: Request) -> Any:
        self.writer(request)
        return parse_json(await read_body(request, self.config.max_json_bytes))

    async def session_start(self, request: Request) -> Response:
        body = validation.session_start(await self._json(request))
        created = await self.blocking(self.store.start_session, body)
        if created:
            return JSONResponse(
                {
                    "session_id": body["session_id"],
                    "status": "created",
                    "message": "Session started successfully",
                },
                status_code=201,
            )
        return JSONResponse(
            {
                "session_id": body["session_id"],
                "status": "already_exists",
                "message": "Session already exists",
            },
            status_code=200,
        )

    async def session_end(self, request: Request) -> Response:
        body = validation.session_end(await self._json(request))
        result = await self.blocking(self.store.end_session, body)
        if result is None:
            raise ContractError("not_found", f"Session not found: {body['session_id']}", 404)
        return JSONResponse(result)

    async def interaction(self, request: Request) -> Response:
        body = validation.interaction(await self._json(request))
        key = request.headers.get("idempotency-key") or None
        if key is not None and len(key) > 256:
            raise invalid("Invalid Idempotency-Key: longer than 256 characters", field="Idempotency-Key")
        ids = await self.writes.add([(body, key)])
        return JSONResponse(
            {"interaction_id": ids[0], "status": "accepted", "message": "Interaction queued for processing"},
            status_code=202,
        )

    async def interaction_batch(self, request: Request) -> Response:
        items = validation.batch(await self._json(request))
        # Each item's key is its span id (metadata.span_id, which the exporter always sets).
        keyed = [(item, _batch_key(item)) for item in items]
        await self.writes.add(keyed)
        return JSONResponse(
            {
                "count": len(items),
                "status": "accepted",
                "message": f"Batch of {len(items)} interactions queued for processing",
            },
            status_code=202,
        )

    async def otlp_traces(self, request: Request) -> Response:
        self.writer(request)
        raw = await read_body(request, self.config.max_otlp_bytes)
        records, as_json = parse_request(raw, request.headers, self.config.max_otlp_bytes)
        rejected, message = await self.blocking(ingest, self.store, records)
        body, media_type = response_body(rejected, message, as_json)
        return Response(body, media_type=media_type)

    # --- health and reads ---------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            await self.blocking(self.store.ping)
        except Exception:
            return JSONResponse({"status": "error", "database": {"status": "disconnected"}}, status_code=503)
        latency = round((time.perf_counter() - started) * 1000, 3)
        return JSONResponse({"status": "ok", "database": {"status": "connected", "latency_ms": latency}})

    async def sessions(self, request: Request) -> Response:
        user = self.scope_user(request, request.query_params.get("user_id") or None)
        sort = request.query_params.get("sort") or "start_time_desc"
        if sort not in ("start_time_desc", "start_time_asc", "total_cost_desc", "total_cost_asc"):
            raise invalid(
                f"Invalid sort: {sort[:64]}",
                field="sort",
                allowed_values=["start_time_desc", "start_time_asc", "total_cost_desc", "total_cost_asc"],
            )
        start_min = _timestamp_param(request, "start_time_min")
        start_max = _timestamp_param(request, "start_time_max")
        active = request.query_params.get("active_only", "false").lower()
        if active not in ("true", "false"):
            raise invalid("Invalid active_only: must be true or false", field="active_only")
        limit = _int_param(request, "limit", 50, 1, 100)
        offset = _int_param(request, "offset", 0, 0, None)
        data, total = await self.blocking(
            lambda: self.store.list_sessions(
                user_id=user,
                start_min=start_min,
                start_max=start_max,
                active_only=active == "true",
                limit=limit,
                offset=offset,
                sort=sort,
            )
        )
        return JSONResponse(
            {
                "data": data,
                "pagination": {
                    "total": total,
                    "limit": limit,
                    "offset": offset,
                    "has_more": offset + len(data) < total,
                },
            }
        )

    async def _visible_session(self, request: Request, session_id: str | None) -> dict[str, Any]:
        principal = self.principal(request)
        session = await self.blocking(self.store.get_session, session_id) if session_id else None
        if session is None or (not principal.admin and session["user_id"] != principal.user_id):
            raise ContractError("not_found", f"Session not found: {(session_id or '')[:256]}", 404)
        return session

    async def session_read(self, request: Request) -> Response:
        """``GET /v1/sessions/{id}`` and ``GET /v1/sessions/{id}/interactions``."""
        session_id, interactions = session_path(request)
        if interactions:
            return await self.session_interactions(request, session_id)
        return JSONResponse(await self._visible_session(request, session_id))

    async def session_interactions(self, request: Request, session_id: str | None) -> Response:
        session = await self._visible_session(request, session_id)
        kind = request.query_params.get("type") or None
        if kind is not None and kind not in ("chat", "db", "api", "cost-event"):
            raise invalid(
                f"Invalid interaction type: {kind[:64]}",
                field="type",
                allowed_values=["chat", "db", "api", "cost-event"],
            )
        rows = await self.blocking(self.store.session_interactions, session["id"], kind)
        return JSONResponse({"session_id": session["id"], "interactions": rows})

    async def stats_summary(self, request: Request) -> Response:
        user = self.scope_user(request, request.query_params.get("user_id") or None)
        start, end = _date_range(request)
        result = await self.blocking(lambda: self.store.stats_summary(start_date=start, end_date=end, user_id=user))
        return JSONResponse(result)

    async def stats_daily(self, request: Request) -> Response:
        user = self.scope_user(request, request.query_params.get("user_id") or None)
        start, end = _date_range(request, required=True)
        assert start is not None
        assert end is not None
        rows = await self.blocking(lambda: self.store.stats_daily(start_date=start, end_date=end, user_id=user))
        return JSONResponse({"start_date": start, "end_date": end, "daily_stats": rows})

    async def stats_by_user(self, request: Request) -> Response:
        user = self.scope_user(request, None)
        start, end = _date_range(request)
        limit = _int_param(request, "limit", 20, 1, 100)
        rows = await self.blocking(
            lambda: self.store.stats_by_user(start_date=start, end_date=end, limit=limit, user_id=user)
        )
        return JSONResponse({"users": rows})


_SESSIONS_PREFIX = "/v1/sessions/"
_INTERACTIONS_SUFFIX = "/interactions"


def session_path(request: Request) -> tuple[str | None, bool]:
    """The session id a read names (``None``: none that can exist) and whether it asks for the
    session's interactions.

    Read from the path as the client sent it, percent-encoded, where it has it (``raw_path``):
    whatever a write accepted is found, newlines and other control characters included, and an
    id holding ``/`` (sent as ``%2F``) or ending in ``/interactions`` is read as the id it is.
    """
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes):
        at = raw.find(_SESSIONS_PREFIX.encode())
        tail = raw[at + len(_SESSIONS_PREFIX) :] if at >= 0 else b""
        interactions = tail.endswith(_INTERACTIONS_SUFFIX.encode())
        if interactions:
            tail = tail[: -len(_INTERACTIONS_SUFFIX)]
        try:
            return unquote_to_bytes(tail).decode("utf-8") or None, interactions
        except UnicodeDecodeError:  # not UTF-8: no stored id is
            return None, interactions
    rest: str = request.path_params["rest"]  # a server without raw_path: the decoded path
    interactions = rest.endswith(_INTERACTIONS_SUFFIX)
    return (rest[: -len(_INTERACTIONS_SUFFIX)] if interactions else rest) or None, interactions


class _AnyText(Convertor[str]):
    """A path parameter of any characters, newlines included (Starlette's ``path`` stops at one)."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


def _timestamp_param(request: Request, name: str) -> str | None:
    raw = request.query_params.get(name)
    return validation.parse_timestamp(raw, name) if raw else None


def _batch_key(item: Mapping[str, Any]) -> str | None:
    span_id = item["metadata"].get("span_id")
    return span_id if isinstance(span_id, str) and 0 < len(span_id) <= 256 else None


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(handler: Handler) -> Handler:
    """Contract errors become their bodies; anything else a 500 ``internal_error``, never a trace."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ContractError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        except Exception:
            _logger.exception("tracker: unexpected error on %s %s", request.method, request.url.path)
            return _error("internal_error", "Internal error", 500)

    return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404 and _browser(request):
        return PlainTextResponse(f"Not found: {request.url.path[:200]}", status_code=404)
    if exc.status_code == 404:
        return _error("not_found", f"No route {request.url.path[:200]}", 404)
    if exc.status_code == 405:
        return _error("invalid_request", f"Method {request.method} not allowed here", 405)
    return _error("invalid_request", str(exc.detail)[:200], exc.status_code)


def _browser(request: Request) -> bool:
    """A person's browser (it asks for HTML), off the API's paths: API clients keep the
    contract's JSON errors everywhere."""
    path = request.url.path
    return "text/html" in request.headers.get("accept", "") and not (path.startswith("/v1/") or path == "/health")


async def _server_error(request: Request, exc: Exception) -> Response:
    return _error("internal_error", "Internal error", 500)


def _trace_url(template: str | None) -> str | None:
    """The trace link template, checked: an http(s) URL with ``{trace_id}`` in it."""
    if not template:
        return None
    if "{trace_id}" not in template or not template.startswith(("http://", "https://", "/")):
        raise ConfigurationError(
            f"ANALYTICS_TRACE_URL must be an http(s) URL with {{trace_id}} in it, got {template[:200]!r}"
        )
    return template


def create_app(config: TrackerConfig | None = None, *, store: Store | None = None) -> Starlette:
    """The tracker as an ASGI app."""
    config = config or TrackerConfig()
    register_url_convertor("otel_analytics_any", _AnyText())
    tracker = TrackerApp(config, store)
    routes: list[BaseRoute] = [
        Route("/health", _guarded(tracker.health), methods=["GET"]),
        Route("/v1/track/session/start", _guarded(tracker.session_start), methods=["POST"]),
        Route("/v1/track/session/end", _guarded(tracker.session_end), methods=["POST"]),
        Route("/v1/track/interaction", _guarded(tracker.interaction), methods=["POST"]),
        Route("/v1/track/interaction/batch", _guarded(tracker.interaction_batch), methods=["POST"]),
        Route("/v1/traces", _guarded(tracker.otlp_traces), methods=["POST"]),
        Route("/v1/sessions", _guarded(tracker.sessions), methods=["GET"]),
        Route("/v1/sessions/{rest:otel_analytics_any}", _guarded(tracker.session_read), methods=["GET"]),
        Route("/v1/stats/summary", _guarded(tracker.stats_summary), methods=["GET"]),
        Route("/v1/stats/daily", _guarded(tracker.stats_daily), methods=["GET"]),
        Route("/v1/stats/by-user", _guarded(tracker.stats_by_user), methods=["GET"]),
    ]
    middleware: list[Middleware] = []
    if config.dashboard:
        from . import dashboard  # Jinja2 loads with the dashboard, not with the API

        tokens = [(token, None) for token in [config.token] if token] + list(config.user_tokens.items())
        routes += dashboard.routes(tracker.store, dashboard.Access(tokens), _trace_url(config.trace_url))
        middleware.append(Middleware(dashboard.SecurityHeaders))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The price snapshot takes a few hundred ms to import: load it now, not in the first request.
        threading.Thread(target=tracker.store.warm_prices, name="tracker-prices", daemon=True).start()
        yield
        if store is None:  # the store made here: closed with the server (its last WAL checkpoint)
            tracker.store.close()

    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, 500: _server_error},
        lifespan=lifespan,
        middleware=middleware,
    )
    app.state.tracker = tracker
    return app
