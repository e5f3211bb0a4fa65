"""Who may see the dashboard, and the headers every page carries.

- With no token configured, the dashboard answers loopback clients only (as the tracker listens
  on loopback by default): anyone else gets 403 and how to configure a token.
- With tokens, a person signs in once (``/login``, the token in a form) and gets an HttpOnly,
  SameSite=Strict cookie (``Secure`` behind HTTPS): a random sign-in id the tracker keeps in
  memory, valid for :data:`SIGN_IN_SECONDS` (12 h) or until ``/logout`` ends it on the server
  (a copy of the cookie is refused from then on) or the tracker restarts. A user-scoped token
  sees only its user's sessions, everywhere (exports included). An ``Authorization: Bearer``
  header works as well (for scripts downloading exports). A sign-in or sign-out posted from
  another site is refused (:func:`cross_site`).
- Every answer carries a Content-Security-Policy with no inline script and no framing,
  ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "otel_analytics_dashboard"
SIGN_IN_SECONDS = 12 * 3600
"""How long a sign-in lasts (the cookie's ``Max-Age`` and the tracker's own limit)."""
MAX_SIGN_INS = 10_000
"""Sign-ins kept at once; past it the oldest is forgotten (its person signs in again)."""
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

    def __init__(
        self, tokens: Iterable[tuple[str, str | None]], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._tokens = [(token.encode(), user) for token, user in tokens]
        self._clock = clock
        self._signed_in: OrderedDict[str, tuple[str | None, float]] = OrderedDict()  # id -> user, expiry

    @property
    def required(self) -> bool:
        return bool(self._tokens)

    def _token(self, presented: str) -> tuple[bool, str | None]:
        """Whether ``presented`` is one of the tokens, and its user (compared in constant time,
        with every token)."""
        candidate, found, user = presented.strip().encode(), False, None
        for token, scope in self._tokens:
            if hmac.compare_digest(candidate, token):
                found, user = True, scope
        return found, user

    def sign_in(self, presented: str) -> str | None:
        """A new sign-in's cookie value for a token, or ``None`` for a wrong one."""
        found, user = self._token(presented)
        if not found:
            return None
        now = self._clock()
        while self._signed_in:  # the oldest first: forget the expired, and any past the bound
            oldest, (_, expires) = next(iter(self._signed_in.items()))
            if expires > now and len(self._signed_in) < MAX_SIGN_INS:
                break
            del self._signed_in[oldest]
        value = secrets.token_urlsafe(32)
        self._signed_in[value] = (user, now + SIGN_IN_SECONDS)
        return value

    def sign_out(self, request: Request) -> None:
        """End the request's sign-in on the server: its cookie no longer works, wherever copied."""
        cookie = request.cookies.get(COOKIE)
        if cookie:
            self._signed_in.pop(cookie, None)

    def viewer(self, request: Request) -> Viewer | None:
        """Who the request is from; ``None``: not signed in (or, with no token, not on loopback)."""
        if not self._tokens:
            return Viewer(None) if _loopback(request) else None
        cookie = request.cookies.get(COOKIE)
        if cookie:
            # A random 256-bit id looked up, as a session store does: nothing to learn from timing.
            found = self._signed_in.get(cookie)
            if found is not None:
                if found[1] > self._clock():
                    return Viewer(found[0])
                del self._signed_in[cookie]
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and presented:
            known, user = self._token(presented)
            if known:
                return Viewer(user)
        return None


def cross_site(request: Request) -> bool:
    """A form posted from another site (a forged sign-in or sign-out). Browsers say where a
    request comes from in ``Sec-Fetch-Site``: only ``same-origin`` and ``none`` (typed, or a
    bookmark) pass. Without it (an older browser), an ``Origin`` naming another host is refused;
    ``Origin: null`` is what a browser sends here under ``Referrer-Policy: no-referrer``, so it is
    not. A request with neither (a script) is not refused."""
    fetched_from = request.headers.get("sec-fetch-site")
    if fetched_from is not None:
        return fetched_from.lower() not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return False
    return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


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
