"""Loud when it sees nothing, quiet otherwise: why the middleware records nothing, said once.

Each message names the fix. Counted per middleware, said once per process (``warn_once``), at
no cost worth measuring (an integer or two a request).
"""

from __future__ import annotations

from .._guard import warn_once

REQUESTS_BEFORE_SAYING = 50
"""Requests seen, none of them a conversation's, before saying so."""
ANSWERS_BEFORE_SAYING = 10
"""Answers of a chat route with no usage and no captured provider call, before saying so."""


class Diagnostics:
    __slots__ = ("_quiet_routes", "_seen", "_usage_by_route", "_used")

    def __init__(self) -> None:
        self._seen = 0
        self._used = 0
        self._usage_by_route: dict[str, int] = {}  # chat route -> answers without usage (-1: had some)
        self._quiet_routes = False

    @staticmethod
    def disabled() -> None:
        warn_once(
            "asgi:disabled",
            "otel-analytics: AnalyticsMiddleware is running but analytics is disabled "
            "(ANALYTICS_ENABLED=false or OTEL_SDK_DISABLED=true): nothing is recorded. Unset the variable "
            "(or configure(enabled=True)) to record.",
        )

    def request(self) -> None:
        seen = self._seen = self._seen + 1
        if seen == REQUESTS_BEFORE_SAYING and not self._used:
            warn_once(
                "asgi:nothing-matched",
                "otel-analytics: %d requests seen and none recorded: no route rule matched them and none "
                "named its session (conversation_id, conversationId or session_id in its JSON body or "
                "query, or an X-Session-Id header). Name the session in the request, pass "
                'AnalyticsMiddleware(session_id=callable), or set route rules (ANALYTICS_ROUTES="POST /chat=chat").',
                seen,
            )

    def conversation(self) -> None:
        """A request that belongs to a conversation (a rule matched it, or it named its session)."""
        self._used += 1

    def chat_answered(self, route: str, usage: bool) -> None:
        """A chat route's request ended: with usage (in its answer, or a captured provider call) or not."""
        found = self._usage_by_route.get(route, 0)
        if found < 0:
            return
        if usage:
            self._usage_by_route[route] = -1
            return
        if len(self._usage_by_route) >= 256 and route not in self._usage_by_route:
            return  # bounded: routes come from rules, but paths from clients
        found = self._usage_by_route[route] = found + 1
        if found == ANSWERS_BEFORE_SAYING:
            warn_once(
                f"asgi:no-usage:{route[:100]}",
                "otel-analytics: %s answered %d times with no usage in its answer and no provider call "
                "captured: its tokens and cost are unknown. If the app calls its LLM through a client "
                "otel-analytics does not hook (not httpx or httpx2) or a host it does not know, list the host "
                "in ANALYTICS_LLM_HOSTS, or record the usage with oa.interaction(...) or oa.track_interaction(...).",
                route,
                found,
            )
