"""The dashboard's pages: overview, sessions, a session, users, a user; each also as CSV and JSON
(``?format=csv|json``, the same filters), and the sign-in.

Server-side templates (Jinja2, autoescaped: every id, name and metadata value is text), one small
charting library (Chart.js, shipped in the package), no inline script, no request to anywhere
but this tracker. Filters live in the URL, so a view can be shared and the back button works.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, unquote_to_bytes, urlencode

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ...report import csv_cell, money
from ..store import Store
from .access import COOKIE, SIGN_IN_SECONDS, Access, Viewer, cross_site, secure
from .queries import SORTS, Dashboard, Period, SessionFilters

EXPORT_LIMIT = 100_000
"""An export holds at most this many sessions (the header ``x-export-truncated`` says so)."""
PERIODS = (1, 7, 30, 90)
"""Days an overview can cover (the default: 7)."""
_PACKAGE = "otel_analytics.tracker.dashboard"


_PLAIN_ID = re.compile(r"[A-Za-z0-9_~-]+")


def _path_part(value: str) -> str:
    """An id percent-encoded whole (``/`` and ``.`` too); most ids need nothing (a quick check)."""
    return value if _PLAIN_ID.fullmatch(value) else quote(value, safe="").replace(".", "%2E")


def session_url(session_id: str) -> str:
    """A session page's path."""
    return "/sessions/" + _path_part(session_id)


def user_url(user_id: str) -> str:
    return "/users/" + _path_part(user_id)


def _templates() -> Jinja2Templates:
    directory = resources.files(_PACKAGE).joinpath("templates")
    templates = Jinja2Templates(directory=str(directory))
    env = templates.env
    env.autoescape = True  # every template, whatever its name
    env.auto_reload = False  # the package's templates do not change while it runs: no stat per page
    env.filters["money"] = money
    env.filters["session_url"] = session_url
    env.filters["user_url"] = user_url
    env.filters["when"] = lambda stamp: "" if not stamp else str(stamp)[:19].replace("T", " ")
    env.filters["number"] = lambda value: "" if value is None else f"{value:,}"
    env.filters["ms"] = lambda value: "" if value is None else f"{value:,.0f} ms"
    env.filters["percent"] = lambda value: f"{value * 100:.1f} %"
    return templates


def _path_id(request: Request, prefix: str) -> str | None:
    """The id in ``prefix/{id}``, from the path as the browser sent it (percent-encoded)."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes):
        at = raw.find(prefix.encode())
        try:
            return unquote_to_bytes(raw[at + len(prefix) :]).decode("utf-8") or None if at >= 0 else None
        except UnicodeDecodeError:
            return None
    rest: str = request.path_params.get("rest", "")
    return rest or None


def _period(request: Request) -> tuple[Period, int]:
    try:
        days = int(request.query_params.get("days", "7"))
    except ValueError:
        days = 7
    days = days if days in PERIODS else 7
    return Period.last(days), days


def _date(raw: str | None) -> str | None:
    """A filter's date (``2026-11-29``), or ``None`` for none or one that is not a date."""
    if not raw:
        return None
    try:
        parsed = datetime.strptime(raw, "%Y-%m-%d")
    except ValueError:
        return None
    return raw if 2000 <= parsed.year < 2100 else None


def cursor(key: tuple[Any, str] | None) -> str:
    """A page boundary (a row's sort key and id) as a URL parameter."""
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=") if key else ""


def _key(raw: str | None) -> tuple[Any, str] | None:
    """The page boundary a URL names; ``None`` for none, or for one not made by :func:`cursor`."""
    if not raw or len(raw) > 4096:
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except ValueError:
        return None
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[1], str)
        and type(value[0]) in (int, str)
        and not (type(value[0]) is int and abs(value[0]) >= 2**63)
    ):
        return value[0], value[1]
    return None


def _csv(columns: Sequence[str], rows: Sequence[dict[str, Any]], filename: str, complete: bool = True) -> Response:
    """A CSV download, its cells made safe for a spreadsheet (:func:`csv_cell`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(c)) for c in columns])
    headers = {"content-disposition": f'attachment; filename="{filename}"'}
    if not complete:
        headers["x-export-truncated"] = f"first {len(rows)} rows"
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


_SESSION_COLUMNS = (
    "id",
    "user_id",
    "start_time",
    "end_time",
    "status",
    "last_activity",
    "interactions",
    "prompt_tokens",
    "completion_tokens",
    "cost_mc",
)


class Views:
    def __init__(self, store: Store, access: Access, trace_url: str | None) -> None:
        self.data = Dashboard(store)
        self.access = access
        self.trace_url = trace_url
        self.templates = _templates()

    def _page(self, request: Request, name: str, viewer: Viewer, status: int = 200, **context: Any) -> Response:
        context.update(request=request, viewer=viewer, signed_in=self.access.required, periods=PERIODS)
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    def guarded(
        self, handler: Callable[[Request, Viewer], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            viewer = self.access.viewer(request)
            if viewer is None:
                if self.access.required:
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
                return PlainTextResponse(
                    "The dashboard answers loopback clients only when the tracker has no token: "
                    "start it with --token (or ANALYTICS_TRACKER_TOKEN) to open it to others.",
                    status_code=403,
                )
            return await handler(request, viewer)

        return endpoint

    # --- pages ------------------------------------------------------------------------------------
    async def overview(self, request: Request, viewer: Viewer) -> Response:
        period, days = _period(request)
        data = self.data.overview(period, viewer.user_id)
        output = request.query_params.get("format")
        if output == "json":
            return JSONResponse(data)
        if output == "csv":
            columns = ("model", "interactions", "failures", "prompt_tokens", "completion_tokens", "cost_mc")
            latency = ("p50_ms", "p95_ms", "ttfc_p50_ms", "ttfc_p95_ms")
            return _csv(columns + latency, data["models"], f"overview-{days}d.csv")
        return self._page(request, "overview.html", viewer, data=data, days=days)

    def _filters(self, request: Request, user_id: str | None = None) -> SessionFilters:
        q = request.query_params
        sort = q.get("sort", "time")
        return SessionFilters(
            user_id=user_id or (q.get("user") or "").strip() or None,
            model=(q.get("model") or "").strip() or None,
            search=(q.get("q") or "").strip() or None,
            start=_date(q.get("from")),
            end=_date(q.get("to")),
            sort=sort if sort in SORTS else "time",
            after=_key(q.get("after")),
            before=_key(q.get("before")),
        )

    async def sessions(self, request: Request, viewer: Viewer) -> Response:
        filters = self._filters(request)
        output = request.query_params.get("format")
        if output in ("json", "csv"):
            rows, complete = self._all_sessions(filters, viewer)
            if output == "json":
                return JSONResponse({"sessions": rows, "count": len(rows), "complete": complete})
            return _csv(_SESSION_COLUMNS, rows, "sessions.csv", complete)
        data = self.data.sessions(filters, viewer.user_id)
        # A user's token lists its own sessions whatever ``user`` says: its links do not repeat it.
        ignored = ("after", "before", "format") + (("user",) if viewer.user_id is not None else ())
        base = _query_without(request, ignored)
        return self._page(request, "sessions.html", viewer, data=data, filters=filters, query=base, cursor=cursor)

    def _all_sessions(self, filters: SessionFilters, viewer: Viewer) -> tuple[list[dict[str, Any]], bool]:
        """Every session the filters match, from the start of the list, for an export: at most
        :data:`EXPORT_LIMIT` (``False``: there were more)."""
        rows: list[dict[str, Any]] = []
        after = None
        while len(rows) < EXPORT_LIMIT:
            # In pieces, each its own read: the store's writes wait for one piece, never the whole.
            piece = dataclasses.replace(filters, after=after, before=None)
            found = self.data.sessions(piece, viewer.user_id, size=min(5000, EXPORT_LIMIT - len(rows)), count=False)
            rows += found["sessions"]
            if not found["has_after"]:
                return rows, True
            after = found["last"]
        return rows, False

    async def session(self, request: Request, viewer: Viewer) -> Response:
        session_id = _path_id(request, "/sessions/")
        data = self.data.session(session_id, viewer.user_id) if session_id else None
        if data is None:
            return self._page(request, "error.html", viewer, status=404, message="No such session.")
        output = request.query_params.get("format")
        if output == "json":
            return JSONResponse(data)
        if output == "csv":
            columns = (
                "timestamp",
                "type",
                "model_name",
                "status",
                "prompt_tokens",
                "completion_tokens",
                "cached_tokens",
                "reasoning_tokens",
                "duration_ms",
                "time_to_first_chunk_ms",
                "cost_mc",
                "pricing_version",
            )
            return _csv(columns, data["interactions"], "session.csv")
        trace_id = data["session"]["trace_id"]
        trace_link = self.trace_url.replace("{trace_id}", trace_id) if self.trace_url else None
        return self._page(request, "session.html", viewer, **data, trace_link=trace_link)

    async def users(self, request: Request, viewer: Viewer) -> Response:
        period, days = _period(request)
        rows = self.data.users(period, viewer.user_id)
        output = request.query_params.get("format")
        if output == "json":
            return JSONResponse({"users": rows})
        if output == "csv":
            columns = ("user_id", "sessions", "interactions", "prompt_tokens", "completion_tokens", "cost_mc")
            return _csv(columns, rows, "users.csv")
        return self._page(request, "users.html", viewer, users=rows, days=days)

    async def user(self, request: Request, viewer: Viewer) -> Response:
        user_id = _path_id(request, "/users/")
        if not user_id or (viewer.user_id is not None and user_id != viewer.user_id):
            return self._page(request, "error.html", viewer, status=404, message="No such user.")
        period, days = _period(request)
        daily = self.data.user_daily(user_id, period)
        sessions = self.data.sessions(self._filters(request, user_id), viewer.user_id)
        output = request.query_params.get("format")
        if output == "json":
            return JSONResponse({"user_id": user_id, "daily": daily, "sessions": sessions["sessions"]})
        if output == "csv":
            return _csv(("day", "interactions", "prompt_tokens", "completion_tokens", "cost_mc"), daily, "user.csv")
        chart = {
            "slots": [row["day"] for row in daily],
            "cost": [{"name": "cost", "values": [row["cost_mc"] for row in daily]}],
            "tokens": [
                {"name": "tokens", "values": [row["prompt_tokens"] + row["completion_tokens"] for row in daily]}
            ],
        }
        return self._page(
            request, "user.html", viewer, user_id=user_id, daily=daily, sessions=sessions, chart=chart, days=days
        )

    async def version(self, request: Request, viewer: Viewer) -> Response:
        return JSONResponse({"version": self.data.version(viewer.user_id)})

    # --- signing in -------------------------------------------------------------------------------
    async def login_form(self, request: Request) -> Response:
        return self._page(request, "login.html", Viewer(None), next=_safe_next(request.query_params.get("next")))

    async def login(self, request: Request) -> Response:
        if cross_site(request):
            return PlainTextResponse("A sign-in must come from the dashboard's own page.", status_code=403)
        form = parse_qs((await request.body())[:8192].decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0]
        target = _safe_next((form.get("next") or ["/"])[0])
        cookie = self.access.sign_in(token)
        if cookie is None:
            return self._page(request, "login.html", Viewer(None), status=401, next=target, error=True)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=SIGN_IN_SECONDS,
            httponly=True,
            samesite="strict",
            secure=secure(request),
            path="/",
        )
        return response

    async def logout(self, request: Request) -> Response:
        if cross_site(request):
            return PlainTextResponse("A sign-out must come from the dashboard's own page.", status_code=403)
        self.access.sign_out(request)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=secure(request))
        return response


def _safe_next(raw: str | None) -> str:
    """Where to go after signing in: a path on this site only (never another host)."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return "/"
    return raw


def _query_without(request: Request, names: Sequence[str]) -> str:
    """The page's query string without ``names``: what its links add to."""
    return urlencode([(k, v) for k, v in request.query_params.multi_items() if k not in names])


def routes(store: Store, access: Access, trace_url: str | None) -> list[BaseRoute]:
    views = Views(store, access, trace_url)
    static = StaticFiles(directory=str(resources.files(_PACKAGE).joinpath("static")))
    return [
        Route("/", views.guarded(views.overview), methods=["GET"]),
        Route("/sessions", views.guarded(views.sessions), methods=["GET"]),
        Route("/sessions/{rest:otel_analytics_any}", views.guarded(views.session), methods=["GET"]),
        Route("/users", views.guarded(views.users), methods=["GET"]),
        Route("/users/{rest:otel_analytics_any}", views.guarded(views.user), methods=["GET"]),
        Route("/dashboard/version", views.guarded(views.version), methods=["GET"]),
        Route("/login", views.login_form, methods=["GET"]),
        Route("/login", views.login, methods=["POST"]),
        Route("/logout", views.logout, methods=["POST"]),
        Mount("/static", static, name="static"),
    ]
