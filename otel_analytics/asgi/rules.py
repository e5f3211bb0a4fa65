"""Route rules: what a request is to analytics (an interaction, a session start or end, nothing).

A rule is a method, a path pattern and a kind. Patterns are literal paths whose segments may be
``{name}`` placeholders (one segment) and which may end in ``/*`` (the path and any subpath).
A ``{session_id}`` or ``{conversation_id}`` placeholder gives the session id. The first rule that
matches wins; no rule, no analytics (the request passes straight through).

The kind ``auto`` (the last default rule, ``* /*=auto``, for any app) makes a request a chat
interaction of its session only if it names one (in its JSON body, query or ``X-Session-Id``
header) and its answer shows usage; provider calls it makes (captured at the HTTP client) join
the session either way. A request that names no session passes through.

Rules come from code (``AnalyticsMiddleware(app, rules=[...])``) or from ``ANALYTICS_ROUTES``::

    ANALYTICS_ROUTES="POST /v1/chat/completions=chat; POST /threads=session_start;
                      DELETE /threads/{session_id}=session_end"
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..attributes import INTERACTION_TYPES
from ..errors import ConfigurationError

KINDS = (*INTERACTION_TYPES, "session_start", "session_end", "auto", "ignore")
_SESSION_PARAMS = ("session_id", "conversation_id", "conversationId")


@dataclass(frozen=True)
class RouteRule:
    """``RouteRule("POST", "/api/chat/*", "chat")``; ``method="*"`` matches any method."""

    method: str
    path: str
    kind: str = "chat"
    _parts: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _prefix: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigurationError(
                f"Route rule {self.method} {self.path}: kind {self.kind!r} is not valid; "
                f"accepted values: {', '.join(KINDS)}."
            )
        if not self.path.startswith("/"):
            raise ConfigurationError(f"Route rule {self.method} {self.path}: the path must start with '/'.")
        path = self.path.rstrip("/") or "/"
        prefix = path.endswith("/*")
        if prefix:
            path = path[:-2] or "/"
        object.__setattr__(self, "method", self.method.upper())
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "_parts", tuple(p for p in path.split("/") if p))

    def match(self, method: str, parts: list[str]) -> dict[str, str] | None:
        """The path parameters if the request (its path split on '/') matches, else ``None``."""
        if self.method != "*" and self.method != method:
            return None
        if len(parts) < len(self._parts) or (not self._prefix and len(parts) != len(self._parts)):
            return None
        params: dict[str, str] = {}
        for pattern, actual in zip(self._parts, parts, strict=False):
            if pattern.startswith("{") and pattern.endswith("}"):
                params[pattern[1:-1]] = actual
            elif pattern != actual:
                return None
        return params

    @staticmethod
    def session_from(params: Mapping[str, str]) -> str | None:
        for name in _SESSION_PARAMS:
            if params.get(name):
                return params[name]
        return None


# Chat backends shaped like LibreChat (the existing integration's routes, plus LibreChat's own
# /api/convos, which the integration missed).
DEFAULT_RULES: tuple[RouteRule, ...] = (
    RouteRule("POST", "/api/messages/{conversation_id}", "chat"),
    RouteRule("POST", "/api/messages/*", "chat"),
    RouteRule("POST", "/api/ask/*", "chat"),
    RouteRule("POST", "/api/chat/*", "chat"),
    RouteRule("POST", "/api/conversations", "session_start"),
    RouteRule("POST", "/api/convos", "session_start"),
    RouteRule("DELETE", "/api/conversations/{conversation_id}", "session_end"),
    RouteRule("DELETE", "/api/convos/{conversation_id}", "session_end"),
    # Any app: a request that names its session is one of the conversation's (see ``auto``).
    RouteRule("*", "/*", "auto"),
)


def parse_rules(name: str, raw: str) -> tuple[RouteRule, ...]:
    """Rules from ``METHOD PATH=KIND`` entries separated by ``;`` (a configuration variable)."""
    rules = []
    for entry in filter(None, (e.strip() for e in raw.split(";"))):
        target, sep, kind = entry.rpartition("=")
        method, _, path = target.strip().partition(" ")
        if not sep or not method or not path.strip():
            raise ConfigurationError(
                f"{name} has an invalid entry {entry!r}; accepted values: 'METHOD /path=KIND' "
                f"entries separated by ';', KIND one of {', '.join(KINDS)}."
            )
        try:
            rules.append(RouteRule(method.strip(), path.strip(), kind.strip()))
        except ConfigurationError as exc:
            raise ConfigurationError(f"{name}: {exc}") from None
    return tuple(rules)


def match(rules: tuple[RouteRule, ...], method: str, path: str) -> tuple[RouteRule, dict[str, str]] | None:
    parts = [p for p in path.split("/") if p]
    for rule in rules:
        params = rule.match(method, parts)
        if params is not None:
            return rule, params
    return None
