"""The client API of the existing LibreChat integration, on spans.

``track_interaction``, ``track_db_operation`` and ``track_api_call`` take the field names of the
tracker's wire contract (``shared/tracker-api.md``) and record the same spans as the decorators,
so whichever exporter is configured ships them. They never raise into the app: a bad field is
dropped with a warning (once per kind of problem), and an interaction that cannot be recorded at
all (an unknown ``type``) is dropped with a warning.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
from opentelemetry import context as otel_context

from . import attributes as attrs
from . import runtime as _runtime
from ._guard import internal_errors, warn_once
from ._ranges import MAX_DURATION_MS, in_time_range
from ._text import clean
from .capture.call import claim_captured
from .context import claim_request_link, note_app_chat, resolve_session
from .recording import Recording, checked_count, emit_interaction, link_back, metadata_json, parent_and_links
from .usage import Usage


def _count(field: str, value: Any, minimum: int = 0) -> int | None:
    return checked_count("track", field, value, minimum)


def track_interaction(
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    type: str = "chat",
    model_name: str | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    db_read_ops: int | None = None,
    db_write_ops: int | None = None,
    api_call_count: int | None = None,
    compute_duration_ms: float | None = None,
    status: str | None = None,
    timestamp: datetime | None = None,
    costs: Mapping[str, int] | None = None,
    metadata: Mapping[str, Any] | None = None,
    response_id: str | None = None,
) -> str | None:
    """Record one finished interaction. Returns its id (the span id, hex), or ``None`` if dropped.

    ``timestamp`` is when it started (default: now minus ``compute_duration_ms``); the span lasts
    ``compute_duration_ms``. Session and user default to the session in context.
    ``response_id``: a chat's id at the provider (``gen_ai.response.id``; not sent to the tracker,
    whose contract has no field for it). When the app's answer passes that response on, the
    middleware sees the same id and counts the exchange once. A chat that the capture of provider
    calls recorded already (the same response id, or else the same model and token counts, in the
    same task or thread) is not recorded again: its interaction's id is returned.
    ``costs``: what the interaction cost, by part, in micro-cents (``ai_tokens_cost_mc``,
    ``db_ops_cost_mc``, ``api_calls_cost_mc``, ``compute_time_cost_mc``): recorded as given, the
    parts not given as 0, and their sum is the interaction's cost (``analytics.cost.usd``,
    ``analytics.pricing.status`` ``given``), instead of a price from the table.
    """
    runtime = _runtime.current()
    if not runtime.settings.enabled:
        return None
    if type not in attrs.INTERACTION_TYPES:
        warn_once(
            f"track:type:{type!r:.40}",
            "otel-analytics: dropping an interaction of invalid type %r (accepted: %s).",
            type,
            ", ".join(attrs.INTERACTION_TYPES),
        )
        return None
    with internal_errors("track_interaction"):
        session = resolve_session(
            session_id if isinstance(session_id, str) and session_id else None,
            user_id if isinstance(user_id, str) and user_id else None,
        )
        if session is None:
            warn_once(
                "track:session",
                "otel-analytics: track_* called with no session_id and no session in "
                "context; the interaction is recorded without a session.",
            )
        duration_ns = _duration_ns(compute_duration_ms)
        start = _start_ns(timestamp, duration_ns)
        extra: dict[str, Any] = {}
        if type == "db":
            for key, value in (
                (attrs.DB_READ_OPS, _count("db_read_ops", db_read_ops)),
                (attrs.DB_WRITE_OPS, _count("db_write_ops", db_write_ops)),
            ):
                extra[key] = value if value is not None else 0
        if type == "api":
            calls = _count("api_call_count", api_call_count, minimum=1)
            extra[attrs.API_CALL_COUNT] = calls if calls is not None else 1
        if status is not None:
            if status in attrs.STATUSES:
                extra[attrs.STATUS] = status
            else:
                warn_once(
                    "track:status",
                    "otel-analytics: ignoring status=%r (accepted: %s).",
                    status,
                    ", ".join(attrs.STATUSES),
                )
        parts = _cost_parts(costs)
        extra.update(parts)
        model = clean(model_name) if isinstance(model_name, str) and model_name else None
        if type == "chat" and model is None:
            warn_once(
                "track:model",
                "otel-analytics: a chat interaction without model_name is recorded as model 'unknown'.",
            )
            model = "unknown"
        outcome = "failed" if status in ("failed", "timeout") else "completed"
        usage = Usage()
        if parts:
            usage.given_cost_mc = sum(parts.values())
        if type == "chat":
            usage.input_tokens = _count("prompt_tokens", prompt_tokens)
            usage.output_tokens = _count("completion_tokens", completion_tokens)
            usage.response_id = _response_id(response_id)
            usage.invalid = (prompt_tokens is not None and usage.input_tokens is None) or (
                completion_tokens is not None and usage.output_tokens is None
            )
        if type == "chat":
            # The same call captured at the HTTP client already (same response id, or same model
            # and counts): counted once, by the capture.
            captured = claim_captured(usage.response_id, model, usage.input_tokens, usage.output_tokens)
            if captured is not None:
                return format(captured, "016x")
        if session is None:  # no session: a span under whatever is current, as any other
            recording = Recording(
                runtime, type, session=None, model=model, metadata=metadata, attributes=extra, start_time=start
            )
            recording.add_usage(usage)
            recording.finish(outcome=outcome, end_time=start + duration_ns)
            return format(recording.span.get_span_context().span_id, "016x")
        # The interaction is over: recorded in one go (no live span), where a live one would go.
        parent, links = parent_and_links(runtime, session)
        # A chat inside a chat request takes the id the request's span links to already.
        pinned = claim_request_link(session) if type == "chat" else None
        context = emit_interaction(
            runtime,
            type,
            session,
            model=model,
            provider=runtime.prices.provider(model) if type == "chat" else None,
            metadata=metadata_json(metadata) if metadata else None,
            extra=extra,
            usage=usage,
            outcome=outcome,
            exc=None,
            start_ns=start,
            end_ns=start + duration_ns,
            links=links,
            pinned=pinned,
            parent=parent if parent is not None else otel_context.get_current(),
        )
        if links:
            link_back(session, context, pinned)
        if type == "chat":
            note_app_chat(usage.response_id)
        return format(context.span_id, "016x")
    return None


def _start_ns(timestamp: Any, duration_ns: int) -> int:
    """When the interaction started: ``timestamp`` when it is one the contract takes (aware,
    2000-2099), else now minus its duration (with a warning)."""
    if isinstance(timestamp, datetime) and timestamp.tzinfo is not None:
        start = int(timestamp.timestamp() * 1e9)
        if in_time_range(start) and in_time_range(start + duration_ns):
            return start
        warn_once("track:timestamp-range", "otel-analytics: ignoring a timestamp outside 2000-2099: %.40r.", timestamp)
    elif timestamp is not None:
        warn_once("track:timestamp", "otel-analytics: ignoring timestamp=%.40r (give an aware datetime).", timestamp)
    now = time.time_ns()
    return now - duration_ns if in_time_range(now - duration_ns) else now


def _response_id(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and 0 < len(value) <= 256):
        return value if value is None else clean(value)
    warn_once(
        "track:response_id",
        "otel-analytics: ignoring response_id=%.80r (accepted: a string of 1-256 characters).",
        value,
    )
    return None


def _duration_ns(compute_duration_ms: Any) -> int:
    if compute_duration_ms is None:
        return 0
    if (
        isinstance(compute_duration_ms, int | float)
        and not isinstance(compute_duration_ms, bool)
        and math.isfinite(compute_duration_ms)
        and 0 <= compute_duration_ms <= MAX_DURATION_MS
    ):
        return int(compute_duration_ms * 1e6)
    warn_once(
        "track:duration",
        "otel-analytics: ignoring compute_duration_ms=%.80r (accepted: a number of ms from 0 to 1e12).",
        compute_duration_ms,
    )
    return 0


def _cost_parts(costs: Mapping[str, int] | None) -> dict[str, int]:
    if costs is None:
        return {}
    if not isinstance(costs, Mapping):
        warn_once(
            "track:costs",
            "otel-analytics: ignoring costs=%r (accepted: a mapping of %s).",
            costs,
            ", ".join(attrs.COST_PARTS),
        )
        return {}
    parts: dict[str, int] = {}
    for key, value in costs.items():
        if key not in attrs.COST_PARTS:
            warn_once(f"track:costs:{key!s:.40}", "otel-analytics: ignoring unknown cost part %r.", key)
            continue
        count = _count(f"costs.{key}", value)
        if count is not None:
            parts[attrs.COST_PART_PREFIX + key] = count
    if parts:  # every part, 0 where none was given, as the tracker receives them
        parts = {attrs.COST_PART_PREFIX + part: 0 for part in attrs.COST_PARTS} | parts
    return parts


def track_db_operation(
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    read_ops: int = 0,
    write_ops: int = 0,
    compute_duration_ms: float | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> str | None:
    """Record database reads and writes of a conversation (a ``db`` interaction)."""
    return track_interaction(
        session_id=session_id,
        user_id=user_id,
        type="db",
        db_read_ops=read_ops,
        db_write_ops=write_ops,
        compute_duration_ms=compute_duration_ms,
        metadata=metadata,
    )


def track_api_call(
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    call_count: int = 1,
    compute_duration_ms: float | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> str | None:
    """Record external API calls of a conversation (an ``api`` interaction)."""
    return track_interaction(
        session_id=session_id,
        user_id=user_id,
        type="api",
        api_call_count=call_count,
        compute_duration_ms=compute_duration_ms,
        metadata=metadata,
    )


def health_check(url: str | None = None, *, timeout_s: float | None = None) -> bool:
    """Whether the analytics tracker answers ``GET /health`` with ``{"status": "ok"}``.

    Uses ``ANALYTICS_TRACKER_URL`` unless ``url`` is given; ``False`` when none is configured,
    the tracker is unreachable, slow past the timeout, or answers anything else. Never raises.
    """
    runtime = _runtime.current()
    base = url or runtime.settings.tracker_url
    if not base:
        return False
    try:  # /health takes no token (tracker contract): none is sent
        response = httpx.get(f"{base.rstrip('/')}/health", timeout=timeout_s or runtime.settings.timeout_s)
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return False
    return response.status_code == 200 and isinstance(body, dict) and body.get("status") == "ok"
