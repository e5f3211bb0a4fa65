"""Spans to tracker calls: the one mapping used by the tracker exporter and by OTLP ingest.

The wire contract is ``shared/tracker-api.md``, fixed by the deployed worker: the bodies built
here carry only fields it defines. A span is first reduced to a :class:`SpanRecord` (from an SDK
``ReadableSpan`` or an OTLP protobuf span), then :func:`to_call` says which route it becomes:

- ``analytics.session.event = start`` → ``POST /v1/track/session/start``
- ``analytics.session.event = end``   → ``POST /v1/track/session/end``
- ``analytics.interaction.type``      → ``POST /v1/track/interaction`` (or a batch of them)
- anything else (the session root span, other libraries' spans) → nothing.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, StatusCode

from . import attributes as attrs
from ._json import loads
from ._ranges import MAX_COUNT, MAX_DURATION_MS, MAX_ID_LENGTH, count, in_time_range
from .context import ANONYMOUS_USER
from .redaction import clean_metadata

SESSION_START = "/v1/track/session/start"
SESSION_END = "/v1/track/session/end"
INTERACTION = "/v1/track/interaction"
INTERACTION_BATCH = "/v1/track/interaction/batch"
MAX_BATCH = 100
_MAX_DURATION_NS = MAX_DURATION_MS * 1_000_000


class SpanRecord(NamedTuple):
    """What the mapping needs of a span, whatever it was decoded from.

    Tuples (made once per exported span): a frozen dataclass costs several times more to build.
    """

    trace_id: int
    span_id: int
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any]
    error: bool = False


_NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


class Call(NamedTuple):
    """One request to the tracker: a route, its JSON body and, for interactions, the key."""

    route: str
    body: dict[str, Any]
    session_id: str
    user_id: str
    idempotency_key: str | None = None
    extra: Mapping[str, Any] = _NO_EXTRA
    """Not sent: what a follow-up call may need (the session start time of an end)."""


_last_second: list[tuple[int, str]] = [(-1, "")]
_MILLISECONDS = tuple(f".{ms:03d}Z" for ms in range(1000))  # no format spec parsed per timestamp


def start_call(session_id: str, user_id: str, start_time: str) -> Call:
    """A session start for a session seen only through its interactions or its end."""
    body = {"session_id": session_id, "user_id": user_id, "start_time": start_time, "metadata": {}}
    return Call(SESSION_START, body, session_id, user_id)


def iso(ns: int) -> str:
    """``2026-11-29T10:15:00.123Z``: the contract's timestamp format.

    Called for every exported span: the date and time part is formatted once per second. The
    cache is one (second, text) tuple replaced in a single store, so concurrent callers never see
    a second paired with another second's text.
    """
    seconds, rest = divmod(ns, 1_000_000_000)
    cached_second, text = _last_second[0]
    if cached_second != seconds:
        text = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second[0] = (seconds, text)
    return text + _MILLISECONDS[rest // 1_000_000]


def record_from_readable(span: Any) -> SpanRecord:
    """A ``SpanRecord`` from an SDK ``ReadableSpan``."""
    if type(span) is ReadableSpan and type(span._context) is SpanContext:
        # What every exported span is: its fields read as the SDK's properties read them, without
        # a Python call per property (~4 % of the mapping's instructions). A test compares both.
        context, start, end, status = span._context, span._start_time, span._end_time, span._status
        trace_id, span_id = context[0], context[1]
    else:
        context, start, end, status = span.get_span_context(), span.start_time, span.end_time, span.status
        trace_id, span_id = context.trace_id, context.span_id
    start = start or 0
    return SpanRecord(
        trace_id, span_id, start, end or start, _plain_attributes(span), status.status_code is StatusCode.ERROR
    )


def _plain_attributes(span: Any) -> dict[str, Any]:
    """A span's attributes as a plain dict, for many fast lookups.

    ``span.attributes`` is a read-only view of the SDK's ``BoundedAttributes``, which answers every
    key through Python code (copying 20 attributes costs ~10 µs here); the dict inside it, when
    the installed SDK has one, is copied in C. An ended span's attributes no longer change.
    """
    inner = getattr(span, "_attributes", None)
    if type(inner) is BoundedAttributes:
        inner = getattr(inner, "_dict", None)
    if type(inner) is dict:
        return inner.copy()
    attributes = span.attributes
    return dict(attributes) if attributes else {}


def _in_time_range(record: SpanRecord) -> SpanRecord:
    """A span whose times the contract cannot carry (before 2000, after 2099: a wrong clock, a
    hand-made span), timed to now with its duration kept where it can be: the tracker would refuse
    the interaction whole."""
    now = time.time_ns()
    duration = record.end_ns - record.start_ns
    duration = duration if 0 <= duration <= _MAX_DURATION_NS else 0
    if in_time_range(now - duration):
        return record._replace(start_ns=now - duration, end_ns=now)
    return record._replace(start_ns=now, end_ns=now + duration)  # 1e12 ms from now is within 2099


def _metadata(raw: Any) -> dict[str, Any]:
    """A span's metadata (a JSON object string), cleaned: spans of any source may carry it."""
    return dict(_cleaned_metadata(raw)) if isinstance(raw, str) else {}


@functools.lru_cache(maxsize=1024)
def _cleaned_metadata(raw: str) -> Mapping[str, Any]:
    """Remembered (read-only): the middleware's metadata is one string per route, sent again and
    again; the caller copies the top level, which is all it adds to."""
    try:
        value = loads(raw)
    except (ValueError, RecursionError):
        return _NO_EXTRA
    return MappingProxyType(clean_metadata(value)) if isinstance(value, dict) else _NO_EXTRA


_count = count


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def session_of(record: SpanRecord) -> tuple[str, str]:
    """Session and user of a span; a span with no session gets one named after its trace."""
    # Runs for every exported span: the checks of _text inline.
    session_id = record.attributes.get(attrs.SESSION_ID)
    if not isinstance(session_id, str) or not session_id or session_id.isspace():  # the contract's rule
        session_id = f"trace-{record.trace_id:032x}"
    user_id = record.attributes.get(attrs.USER_ID)
    if not isinstance(user_id, str) or not user_id or user_id.isspace():
        user_id = ANONYMOUS_USER
    return session_id[:MAX_ID_LENGTH], user_id[:MAX_ID_LENGTH]


def to_call(record: SpanRecord, *, send_costs: bool = False) -> Call | None:
    """The tracker call a span maps to, or ``None`` for spans the tracker has no route for.

    ``send_costs``: include the span's own cost estimate (``costs``); explicit cost parts given
    by the caller (``track_interaction(costs=...)``) are always sent.
    """
    a = record.attributes
    event = a.get(attrs.SESSION_EVENT)
    interaction_type = a.get(attrs.INTERACTION_TYPE)
    if event is None and interaction_type is None:
        return None
    session_id, user_id = session_of(record)
    if not (in_time_range(record.start_ns) and in_time_range(record.end_ns)):
        record = _in_time_range(record)
    if event == "start":
        body = {
            "session_id": session_id,
            "user_id": user_id,
            "start_time": iso(record.start_ns),
            "metadata": _metadata(a.get(attrs.METADATA)),
        }
        return Call(SESSION_START, body, session_id, user_id)
    if event == "end":
        start = _text(a.get(attrs.SESSION_START_TIME))
        return Call(
            SESSION_END,
            {"session_id": session_id, "end_time": iso(record.end_ns)},
            session_id,
            user_id,
            extra={"start_time": start or iso(record.end_ns)},
        )
    if event is not None or interaction_type not in attrs.INTERACTION_TYPES:
        return None  # the root span, or a type this contract does not know
    interaction = interaction_body(record, session_id, user_id, interaction_type, send_costs)
    # The span id (hex, already in the metadata) makes retries of this interaction idempotent.
    key = interaction["metadata"]["span_id"]
    return Call(INTERACTION, interaction, session_id, user_id, idempotency_key=key)


_METADATA, _STATUS, _OUTCOME = attrs.METADATA, attrs.STATUS, attrs.OUTCOME
_STATUSES = frozenset(attrs.STATUSES)
_RESPONSE_MODEL, _REQUEST_MODEL = attrs.GEN_AI_RESPONSE_MODEL, attrs.GEN_AI_REQUEST_MODEL
# Token counts: the contract's own fields, and those it has none for (the cache counts ride in its
# metadata, where the local tracker prices them).
_BODY_TOKENS = (
    ("prompt_tokens", attrs.GEN_AI_USAGE_INPUT_TOKENS),
    ("completion_tokens", attrs.GEN_AI_USAGE_OUTPUT_TOKENS),
)
_METADATA_TOKENS = (
    ("cache_read_tokens", attrs.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
    ("cache_write_tokens", attrs.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS),
    ("reasoning_tokens", attrs.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS),
)
_TTFC, _PRICING_VERSION = attrs.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, attrs.PRICING_VERSION
_PROVIDER, _USAGE_STATUS = attrs.GEN_AI_PROVIDER_NAME, attrs.USAGE_STATUS
_COST_ATTRIBUTES = tuple((part, attrs.COST_PART_PREFIX + part) for part in attrs.COST_PARTS)


def interaction_body(
    record: SpanRecord, session_id: str, user_id: str, interaction_type: str, send_costs: bool
) -> dict[str, Any]:
    # Runs for every exported interaction: plain lookups and inline checks, no helper per field,
    # attribute names bound once (with those, a third fewer instructions than before).
    trace_id, span_id, start_ns, end_ns, a, error = record
    get = a.get
    raw_metadata = get(_METADATA)
    metadata = _metadata(raw_metadata) if raw_metadata is not None else {}
    # Lowercase hex, as W3C trace context writes them (to_bytes().hex(): no format spec to parse).
    metadata["trace_id"] = trace_id.to_bytes(16, "big").hex()
    metadata["span_id"] = span_id.to_bytes(8, "big").hex()
    duration_ns = end_ns - start_ns
    body: dict[str, Any] = {
        "session_id": session_id,
        "user_id": user_id,
        "type": interaction_type,
        "timestamp": iso(start_ns),
        # Whole µs (half up) as ms: integer arithmetic, where round(x, 3) formats a float.
        "compute_duration_ms": (duration_ns + 500) // 1000 / 1000 if duration_ns > 0 else 0.0,
    }
    if duration_ns > _MAX_DURATION_NS:  # out of the contract's range: dropped, the rest kept
        del body["compute_duration_ms"]
    status = get(_STATUS)
    if status in _STATUSES:
        body["status"] = status
    elif error or get(_OUTCOME) in ("failed", "cancelled"):
        body["status"] = "failed"
    if interaction_type == "chat":
        model = get(_RESPONSE_MODEL)
        if not isinstance(model, str) or not model:  # a str subclass (a str enum, say) is a name too
            model = get(_REQUEST_MODEL)
            if not isinstance(model, str) or not model:
                model = "unknown"
        body["model_name"] = model[:MAX_ID_LENGTH]
        for field, attribute in _BODY_TOKENS:
            tokens = get(attribute)
            if type(tokens) is int and 0 <= tokens <= MAX_COUNT:
                body[field] = tokens
        for field, attribute in _METADATA_TOKENS:
            tokens = get(attribute)
            if type(tokens) is int and 0 <= tokens <= MAX_COUNT:
                metadata[field] = tokens
        provider = get(_PROVIDER)
        if type(provider) is str and provider and provider != "unknown":
            metadata["provider"] = provider
        usage_status = get(_USAGE_STATUS)
        if usage_status == "missing" or usage_status == "invalid":
            metadata["usage"] = usage_status
        ttfc = get(_TTFC)
        if type(ttfc) is float and 0 <= ttfc <= 1e9:  # seconds, as the conventions write it
            metadata["time_to_first_chunk_ms"] = round(ttfc * 1000, 3)
        version = get(_PRICING_VERSION)
        if type(version) is str and version:
            metadata["pricing_version"] = version[:MAX_ID_LENGTH]
    elif interaction_type == "db":
        body["db_read_ops"] = _count(get(attrs.DB_READ_OPS)) or 0
        body["db_write_ops"] = _count(get(attrs.DB_WRITE_OPS)) or 0
    elif interaction_type == "api":
        calls = _count(get(attrs.API_CALL_COUNT))
        body["api_call_count"] = calls if calls else 1
    costs = None
    if not a.keys().isdisjoint(attrs.COST_PART_ATTRIBUTES):  # explicit cost parts are rare: one test in C
        for part, name in _COST_ATTRIBUTES:
            value = get(name)
            if type(value) is int and 0 <= value <= MAX_COUNT:
                costs = costs or dict.fromkeys(attrs.COST_PARTS, 0)
                costs[part] = value
    if costs is not None:
        body["costs"] = costs
    elif send_costs and _count(get(attrs.COST_MICRO_CENTS)) is not None:
        body["costs"] = {part: 0 for part in attrs.COST_PARTS} | {"ai_tokens_cost_mc": a[attrs.COST_MICRO_CENTS]}
    body["metadata"] = metadata
    return body
