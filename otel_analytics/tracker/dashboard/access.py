"""Who may see the dashboard, and the headers every page carries.

- With no token configured, the dashboard answers loopback clients only (as the tracker listens
  on loopback by default): anyone else gets 403 and how to configure a token.
- With tokens, a person signs in once (``/login``, the token in a form) and gets an HttpOnly,
  SameSite=Strict cookie (``Secure`` behind HTTPS), valid while the tracker runs; ``/logout``
  ends it. A user-scoped token sees only its user's sessions, everywhere (exports included). An
  ``Authorization: Bearer`` header works as well (for scripts downloading exports).
- Every answer carries a Content-Security-Policy with no inline script and no framing,
  ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "otel_analytics_dashboard"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


class Viewer:
    """Who is looking: ``user_id`` is the one user a scoped token may see (``None``: all)."""

    __slots__ = ("user_id",)

    def __init__(self, user_id: str | None) -> None:
        self.user_id = user_id


class Access:
    """The dashboard's sign-in, over the tracker's tokens (``token -> user`` for scoped ones;
    ``None`` for the admin token)."""

    def __init__(self, tokens: Iterable[tuple[str, str | None]]) -> None:
        self._secret = secrets.token_bytes(32)  # cookies last while this tracker runs
        self._tokens = [(token.encode(), user) for token, user in tokens]
        self._sessions = {self._cookie_of(token): user for token, user in self._tokens}

    @property
    def required(self) -> bool:
        return bool(self._tokens)

    def _cookie_of(self, token: bytes) -> str:
        return hmac.new(self._secret, token, hashlib.sha256).hexdigest()

    def sign_in(self, presented: str) -> str | None:
        """The cookie value for a token, or ``None`` for a wrong one (compared in constant time,
        with every token)."""
        candidate, found = presented.strip().encode(), None
        for token, _ in self._tokens:
            if hmac.compare_digest(candidate, token):
                found = token
        return self._cookie_of(found) if found is not None else None

    def viewer(self, request: Request) -> Viewer | None:
        """Who the request is from; ``None``: not signed in (or, with no token, not on loopback)."""
        if not self._tokens:
            return Viewer(None) if _loopback(request) else None
        cookie = request.cookies.get(COOKIE)
        if cookie:
            for known, user in self._sessions.items():
                if hmac.compare_digest(cookie.encode(), known.encode()):
                    return Viewer(user)
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and presented:
            value = self.sign_in(presented)
            if value is not None:
                return Viewer(self._sessions[value])
        return None


def _loopback(request: Request) -> bool:
    client = request.client
    if client is None:
        return False
    try:
        return ipaddress.ip_address(client.host).is_loopback
    except ValueError:
        return client.host in ("localhost", "testclient")


def secure(request: Request) -> bool:
    """Whether the page was asked for over HTTPS (itself, or behind a proxy that says so)."""
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


class SecurityHeaders:
    """Adds the security headers to every answer of the app it wraps (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
