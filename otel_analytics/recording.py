"""One interaction being recorded: its span, its usage, and how it ends.

Everything the three ways in (middleware, decorators and context managers, ``track_*``) record
goes through :class:`Recording`, so they all produce the same spans. Attributes that samplers
should see (operation, provider, model, session) are set when the span starts; usage, cost and
outcome when it ends, once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from . import attributes as attrs
from ._guard import internal_errors, report_internal_error, warn_once
from ._json import dumps
from ._ranges import count
from ._text import clean
from .context import SessionRef, claim_request_link, current_session, note_app_chat, session_parent
from .metrics import MAX_WAITING
from .pricing import cost_of
from .redaction import clean_metadata
from .runtime import Runtime, pinned_ids
from .usage import Usage, read_response, read_stream_item

_TEXT = (str, bytes)  # a tuple made once: ``str | bytes`` builds a union on every call
_current: ContextVar[Recording | None] = ContextVar("otel_analytics_recording", default=None)


def metadata_json(metadata: Any) -> str:
    """Metadata as a JSON object string: secrets redacted at any depth, bounded
    (:func:`~otel_analytics.redaction.clean_metadata`). Metadata that is not a mapping is dropped
    with a warning; the interaction is kept."""
    if not isinstance(metadata, Mapping):
        warn_once("metadata:type", "otel-analytics: ignoring metadata=%.80r (accepted: a mapping).", metadata)
        return "{}"
    return dumps(clean_metadata(metadata)).decode()


def span_name(interaction_type: str, operation: str | None, model: str | None, name: str | None) -> str:
    if interaction_type == "chat":
        op = operation or "chat"
        return f"{op} {model}" if model else op
    return f"{interaction_type} {name}" if name else interaction_type


def start_attributes(
    runtime: Runtime,
    interaction_type: str,
    session: SessionRef | None,
    *,
    model: str | None,
    provider: str | None,
    operation: str | None,
    metadata: str | None,
    extra: Mapping[str, AttributeValue] | None,
) -> dict[str, AttributeValue]:
    """What an interaction span carries from its start (what samplers see)."""
    span_attrs: dict[str, AttributeValue] = {attrs.INTERACTION_TYPE: interaction_type}
    if interaction_type == "chat":
        span_attrs[attrs.GEN_AI_OPERATION_NAME] = operation or "chat"
        span_attrs[attrs.GEN_AI_PROVIDER_NAME] = provider or "unknown"
        if model:
            span_attrs[attrs.GEN_AI_REQUEST_MODEL] = model
    if session is not None:
        span_attrs[attrs.SESSION_ID] = session.session_id
        span_attrs[attrs.USER_ID] = session.user_id
        if interaction_type == "chat":
            span_attrs[attrs.GEN_AI_CONVERSATION_ID] = session.session_id
    if metadata:
        span_attrs[attrs.METADATA] = metadata
    if extra:
        span_attrs.update(extra)
    return span_attrs


def end_attributes(
    runtime: Runtime,
    interaction_type: str,
    usage: Usage,
    *,
    model: str | None,
    provider: str | None,
    outcome: str,
    exc: BaseException | None,
    out: dict[str, AttributeValue],
    error_type: str | None = None,
) -> Status | None:
    """Add what is known when an interaction ends to ``out``; returns the span status to set.

    ``error_type``: the work failed without an exception (an HTTP error answer, say): the
    ``error.type`` to record; the outcome is then ``failed``."""
    out[attrs.OUTCOME] = outcome
    status = None
    if error_type is not None:
        out[attrs.OUTCOME] = "failed"
        out[attrs.ERROR_TYPE] = error_type
        status = Status(StatusCode.ERROR, error_type)
    elif exc is not None and outcome == "failed":
        out[attrs.ERROR_TYPE] = type(exc).__qualname__
        status = Status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}"[:256])
    elif outcome == "cancelled":
        out[attrs.ERROR_TYPE] = "cancelled"
        status = Status(StatusCode.ERROR, "cancelled")
    given = usage.given_cost_mc
    if given is not None:  # the caller's own cost: counted instead of a price, whatever the usage
        out[attrs.COST_USD] = given / 100_000
        out[attrs.COST_MICRO_CENTS] = given
        out[attrs.PRICING_STATUS] = "given"
    if interaction_type != "chat":
        return status
    if usage.response_model:
        out[attrs.GEN_AI_RESPONSE_MODEL] = usage.response_model
    if usage.response_id:
        out[attrs.GEN_AI_RESPONSE_ID] = usage.response_id
    if usage.finish_reasons:
        out[attrs.GEN_AI_RESPONSE_FINISH_REASONS] = tuple(usage.finish_reasons)
    if usage.input_tokens is not None:
        out[attrs.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
    if usage.output_tokens is not None:
        out[attrs.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
    # Cache and reasoning counts are subsets: recorded when there are some.
    if usage.cache_read_tokens:
        out[attrs.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read_tokens
    if usage.cache_write_tokens:
        out[attrs.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS] = usage.cache_write_tokens
    if usage.reasoning_tokens:
        out[attrs.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens
    if not usage.reported:
        out[attrs.USAGE_STATUS] = "invalid" if usage.invalid else "missing"
        if given is None:
            out[attrs.PRICING_STATUS] = "no_usage"
        return status
    # Invalid: a count was dropped (out of range, or not an integer); the others are kept, priced.
    out[attrs.USAGE_STATUS] = "invalid" if usage.invalid else "reported"
    if given is not None:
        return status
    priced_model = usage.response_model or model
    price = runtime.prices.price(priced_model, provider) if priced_model else None
    if price is None and model and priced_model != model:
        price = runtime.prices.price(model, provider)
    cost = cost_of(usage, price) if price is not None else None
    if cost is None:
        prices = runtime.prices  # no price: none is known, or a lookup was skipped (a spent budget)
        skipped = (priced_model and not prices.looked_up(priced_model, provider)) or (
            model and priced_model != model and not prices.looked_up(model, provider)
        )
        out[attrs.PRICING_STATUS] = "not_looked_up" if skipped else "unknown_model"
        return status
    # A cost means priced; the version says by what (genai-prices, or your price file).
    out[attrs.COST_USD] = cost.usd
    out[attrs.COST_MICRO_CENTS] = cost.micro_cents
    out[attrs.PRICING_VERSION] = cost.version
    return status


def parent_and_links(runtime: Runtime, session: SessionRef | None) -> tuple[otel_context.Context | None, list[Link]]:
    """Where an interaction span goes: under the current span when that is in the session's trace,
    else under the session's root, linked to the current span (an HTTP request's, say)."""
    if session is None:
        return None, []
    outer = trace.get_current_span().get_span_context()
    if outer.is_valid and outer.trace_id == session.trace_id:
        return None, []
    return session_parent(runtime, session), ([Link(outer)] if outer.is_valid else [])


def link_back(session: SessionRef, interaction: SpanContext, claimed: SpanContext | None = None) -> None:
    """Point the current (request) span at the interaction, and tag it with the session; not when
    the interaction took the id that span links to already (``claimed``: claim_request_link's)."""
    if claimed is not None and claimed.span_id == interaction.span_id:
        return
    outer = trace.get_current_span()
    if outer.is_recording():
        outer.add_link(interaction)
        outer.set_attribute(attrs.REQUEST_SESSION_ID, session.session_id)


def span_kind(interaction_type: str) -> SpanKind:
    return SpanKind.INTERNAL if interaction_type == "cost-event" else SpanKind.CLIENT


def emit_interaction(
    runtime: Runtime,
    interaction_type: str,
    session: SessionRef,
    *,
    model: str | None,
    provider: str | None,
    metadata: str | None,
    extra: Mapping[str, AttributeValue] | None,
    usage: Usage,
    outcome: str,
    exc: BaseException | None,
    start_ns: int,
    end_ns: int,
    links: Sequence[Link],
    pinned: SpanContext | None,
    parent: otel_context.Context | None = None,
    plain: bool = False,
    operation: str | None = None,
    error_type: str | None = None,
    chunk_ends: Sequence[int] | None = None,
) -> SpanContext:
    """Record a finished interaction as one span, built with all its attributes at once.

    For work that is over when it is recorded (the middleware's requests, ``track_*`` calls):
    the span need not exist while the work runs, and building it once costs far less than
    updating it. Samplers still see the operation, provider and model (and everything else) when
    it is created. ``parent`` defaults to the session's root. ``pinned``: the span's context when
    another span links to it already (its id is kept). ``plain``: the caller vouches that
    ``extra``, the ids, model and metadata are plain values (see ``FinishedSpans.emit``); what
    this function adds itself always is. ``chunk_ends``: when each chunk of a streamed answer
    ended (monotonic ns), for the metrics. Returns the span's context.
    """
    span_attrs = start_attributes(
        runtime,
        interaction_type,
        session,
        model=model,
        provider=provider,
        operation=operation,
        metadata=metadata,
        extra=extra,
    )
    status = end_attributes(
        runtime,
        interaction_type,
        usage,
        model=model,
        provider=provider,
        outcome=outcome,
        exc=exc,
        out=span_attrs,
        error_type=error_type,
    )
    metrics = runtime.metrics
    if metrics is not None:  # sampled or not: metrics count every interaction
        waiting = metrics.waiting  # GenAIMetrics.record's work, without the call
        user_id = session.user_id if session is not None and metrics.with_user_id else None
        waiting.append((interaction_type, user_id, span_attrs, (end_ns - start_ns) / 1e9, chunk_ends))
        if len(waiting) > MAX_WAITING:
            metrics.hand_on_when_full()
    name = span_name(interaction_type, operation, model, None)
    kind = span_kind(interaction_type)
    finished = runtime.finished
    if status is None and finished is not None:
        # The session's root stands for session_parent()'s context, built only if a sampler asks.
        where = parent if parent is not None else runtime.session_root(session.trace_id, session.root_span_id)
        context = finished.emit(name, where, kind, span_attrs, links, start_ns, end_ns, pinned, plain)
        if context is not None:
            return context
    if parent is None:
        parent = session_parent(runtime, session)
    if pinned is not None:
        with pinned_ids(session.trace_id, pinned.span_id):
            span = runtime.tracer.start_span(name, parent, kind, span_attrs, links, start_ns)
    else:
        span = runtime.tracer.start_span(name, parent, kind, span_attrs, links, start_ns)
    if status is not None:
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            span.record_exception(exc)
        span.set_status(status)
    span.end(end_time=end_ns)
    return span.get_span_context()


class _Activation:
    """What :meth:`Recording.activated` returns."""

    __slots__ = ("_recording", "_recording_token", "_session_token", "_token")

    def __init__(self, recording: Recording) -> None:
        self._recording = recording

    def __enter__(self) -> None:
        recording = self._recording
        self._token = otel_context.attach(recording.span_context_in(otel_context.get_current()))
        session = recording._session
        self._session_token = current_session.set(session) if session is not None else None
        self._recording_token = _current.set(recording)

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._recording_token)
        if self._session_token is not None:
            current_session.reset(self._session_token)
        otel_context.detach(self._token)


def current_recording() -> Recording | None:
    """The interaction whose work is running (inside ``with oa.interaction(...)`` or a decorated
    function), if any."""
    return _current.get()


class Recording:
    """The live handle of one interaction: ``with oa.interaction(...) as it`` gives one."""

    __slots__ = (
        "_chunk_ends",
        "_content",
        "_context",
        "_context_base",
        "_ended",
        "_first_chunk_ns",
        "_given_costs",
        "_late",
        "_model",
        "_provider",
        "_runtime",
        "_session",
        "_start_attributes",
        "_start_wall",
        "_started",
        "_type",
        "_usage",
        "_usage_recorded",
        "captured",
        "span",
    )

    def __init__(
        self,
        runtime: Runtime,
        interaction_type: str,
        *,
        session: SessionRef | None,
        model: str | None = None,
        provider: str | None = None,
        operation: str | None = None,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
        start_time: int | None = None,
    ) -> None:
        self._runtime = runtime
        self._type = interaction_type
        self._session = session
        model, provider, operation, name = _name(model), _name(provider), _name(operation), _name(name)
        self._model = model
        self._usage = Usage()
        self._usage_recorded = False
        self._content: dict[str, str] = {}
        self._context: otel_context.Context | None = None
        self._context_base: otel_context.Context | None = None
        self._ended = False
        self._started = time.monotonic_ns()
        self._first_chunk_ns = 0
        self._given_costs: dict[str, int] | None = None
        metrics_on = runtime.metrics is not None
        self._chunk_ends: list[int] | None = [] if metrics_on else None
        self._late: dict[str, AttributeValue] | None = {} if metrics_on else None
        self._start_wall = (start_time or time.time_ns()) if metrics_on else 0
        self.captured = False
        """A provider call captured inside it has filled it (``capture``): the next one does not."""
        self._provider = provider or (runtime.prices.provider(model) if interaction_type == "chat" else None)
        span_attrs = start_attributes(
            runtime,
            interaction_type,
            session,
            model=model,
            provider=self._provider,
            operation=operation,
            metadata=metadata_json(metadata) if metadata else None,
            extra=attributes,
        )
        self._start_attributes = span_attrs if metrics_on else None
        parent, links = parent_and_links(runtime, session)
        # A chat inside a chat request takes the id the request's span links to already.
        pinned = claim_request_link(session) if session is not None and interaction_type == "chat" else None
        with pinned_ids(pinned.trace_id, pinned.span_id) if pinned is not None else nullcontext():
            self.span = runtime.tracer.start_span(
                span_name(interaction_type, operation, model, name),
                context=parent,
                kind=span_kind(interaction_type),
                attributes=span_attrs,
                links=links,
                start_time=start_time,
            )
        if links and session is not None:
            link_back(session, self.span.get_span_context(), pinned)

    # --- what the caller records -------------------------------------------------------------
    def record_usage(
        self,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        model: str | None = None,
        response_id: str | None = None,
        finish_reasons: list[str] | None = None,
    ) -> None:
        """Record token usage (``prompt_``/``completion_tokens`` are OpenAI's names for the same).

        A count that is not an integer from 0 to 2**53 is dropped with a warning (once per kind)
        and the usage flagged ``invalid``; the other counts are kept.
        """
        with internal_errors("record_usage"):
            given = {
                "input_tokens": input_tokens if input_tokens is not None else prompt_tokens,
                "output_tokens": output_tokens if output_tokens is not None else completion_tokens,
                "cache_read_tokens": cache_read_tokens,
                "cache_write_tokens": cache_write_tokens,
                "reasoning_tokens": reasoning_tokens,
            }
            counts = {name: checked_count("record_usage", name, value) for name, value in given.items()}
            usage = Usage(
                **counts,
                response_model=_name(model),
                response_id=_name(response_id),
                finish_reasons=[clean(r) for r in finish_reasons or [] if isinstance(r, str) and r],
                invalid=any(given[name] is not None and counts[name] is None for name in given),
            )
            self.add_usage(usage)

    def add_usage(self, usage: Usage) -> None:
        """Fold usage checked already (``track_interaction``'s) in, as :meth:`record_usage` does."""
        self._usage.merge(usage)
        self._usage_recorded = True

    def record_response(self, response: Any) -> None:
        """Read model, usage, id and finish reasons from an OpenAI- or Anthropic-shaped response."""
        with internal_errors("record_response"):
            read_response(response, self._usage)
            if self._runtime.settings.capture_content:
                output = _output_messages(response)
                if output:
                    self._content[attrs.GEN_AI_OUTPUT_MESSAGES] = output

    def record_content(self, *, input_messages: Any = None, output_messages: Any = None) -> None:
        """Record message content: only when content capture is on (it is off by default)."""
        if not self._runtime.settings.capture_content:
            return
        with internal_errors("record_content"):
            if input_messages is not None:
                self._content[attrs.GEN_AI_INPUT_MESSAGES] = json.dumps(input_messages, default=str)
            if output_messages is not None:
                self._content[attrs.GEN_AI_OUTPUT_MESSAGES] = json.dumps(output_messages, default=str)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Set one attribute on the interaction's span (the metrics see it too).

        A cost part (``analytics.cost.db_ops_cost_mc`` and the like) is a cost the caller gives,
        as ``track_interaction``'s ``costs``: the parts' sum becomes the interaction's cost
        (pricing status ``given``), which the tracker, the span and the metrics all count. One
        that is not an integer from 0 to 2**53 is dropped with a warning."""
        if key in attrs.COST_PART_ATTRIBUTES:
            given = checked_count("set_attribute", key, value)
            if given is None:
                return
            parts = self._given_costs = self._given_costs or {}
            parts[key] = given
            self._usage.given_cost_mc = sum(parts.values())
        value = clean(value) if isinstance(value, str) else value
        self.span.set_attribute(key, value)
        if key == attrs.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK:
            self._first_chunk_ns = -1  # timed by who set it (a captured call): not by the chunks here
        if self._late is not None:  # what the metrics read, sampled span or not
            self._late[key] = value

    def chunk(self) -> None:
        """A chunk of the streamed answer ended (now): the first one times the time to first chunk."""
        now = time.monotonic_ns()
        if not self._first_chunk_ns:
            self._first_chunk_ns = now
        if self._chunk_ends is not None:
            self._chunk_ends.append(now)

    def add_chunk_ends(self, ends: Sequence[int]) -> None:
        """The chunks of a captured call's stream that filled this interaction, unless its own
        stream (a decorated generator's items) timed them already."""
        if self._chunk_ends is not None and not self._chunk_ends:
            self._chunk_ends.extend(ends)

    @property
    def usage_recorded(self) -> bool:
        return self._usage_recorded

    def observe(self, item: Any) -> None:
        """Look at a value the work produced (a response or a stream chunk) for usage."""
        if self._usage_recorded or isinstance(item, _TEXT):
            return
        if self._runtime.settings.capture_content:
            self.record_response(item)  # the output messages too
            return
        try:
            read_stream_item(item, self._usage)  # once a chunk: only what the item can still add
        except Exception as error:
            report_internal_error("record_response", error)

    # --- ending --------------------------------------------------------------------------------
    def span_context_in(self, current: otel_context.Context) -> otel_context.Context:
        """``current`` with this interaction's span set, remembered for the last ``current``: a
        decorated stream activates it once a chunk, almost always from the same context."""
        if current is not self._context_base or self._context is None:
            self._context_base = current
            self._context = trace.set_span_in_context(self.span, current)
        return self._context

    def make_current(self) -> None:
        """Make this interaction's span (and session) current for good: in a context that is the
        work's own (a decorated generator's), which ends with it."""
        otel_context.attach(trace.set_span_in_context(self.span))
        if self._session is not None:
            current_session.set(self._session)
        _current.set(self)

    def activated(self) -> _Activation:
        """Make this interaction's span (and session) current, and restore both on exit.

        Attach and detach happen in the same frame, so no context token ever crosses a ``yield``
        into another request's context. A class, not ``@contextmanager``: a decorated stream
        enters it once a chunk.
        """
        return _Activation(self)

    @property
    def interaction_type(self) -> str:
        return self._type

    @property
    def model(self) -> str | None:
        """The requested model."""
        return self._model

    @property
    def ended(self) -> bool:
        return self._ended

    def finish(
        self,
        exc: BaseException | None = None,
        *,
        outcome: str | None = None,
        end_time: int | None = None,
        error_type: str | None = None,
    ) -> None:
        """End the span once, with usage, cost and how the work ended (one attribute update).

        ``error_type``: the work failed without an exception here (an HTTP error answer, say):
        the ``error.type`` to record, and the span's status is an error."""
        if self._ended:
            return
        self._ended = True
        if end_time is None:
            end_time = time.time_ns()  # before pricing: the span measures the work, not us
        span = self.span
        try:
            final: dict[str, AttributeValue] = dict(self._content)
            if self._first_chunk_ns > 0 and self._type == "chat":
                final[attrs.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = (self._first_chunk_ns - self._started) / 1e9
            status = end_attributes(
                self._runtime,
                self._type,
                self._usage,
                model=self._model,
                provider=self._provider,
                outcome=outcome or _outcome_of(exc),
                exc=exc,
                out=final,
                error_type=error_type,
            )
            span.set_attributes(final)
            metrics = self._runtime.metrics
            if metrics is not None and self._start_attributes is not None:
                seen = {**self._start_attributes, **(self._late or {}), **final}
                duration = max(end_time - self._start_wall, 0) / 1e9
                user_id = self._session.user_id if self._session is not None else None
                metrics.record(self._type, seen, duration, user_id, self._chunk_ends)
            if self._type == "chat":
                note_app_chat(self._usage.response_id)
            if status is not None:
                if exc is not None and not isinstance(exc, asyncio.CancelledError):
                    span.record_exception(exc)
                span.set_status(status)
        except Exception as error:
            report_internal_error("finish", error)
        span.end(end_time=end_time)


def checked_count(where: str, field: str, value: Any, minimum: int = 0) -> int | None:
    """A count from the caller, in the contract's range; anything else dropped with a warning."""
    if value is None:
        return None
    taken = count(value, minimum)
    if taken is None:
        warn_once(
            f"{where}:{field}",
            "otel-analytics: ignoring %s=%.80r (accepted: an integer from %d to 2**53).",
            field,
            value,
            minimum,
        )
    return taken


def _name(value: object) -> str | None:
    """A name from the caller (a model, a provider, a response id): a non-empty string, storable."""
    return clean(value) if isinstance(value, str) and value else None


def _outcome_of(exc: BaseException | None) -> str:
    if exc is None:
        return "completed"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, GeneratorExit):
        return "closed"
    return "failed"


def _output_messages(response: Any) -> str | None:
    """The assistant messages of an OpenAI-shaped response, as the GenAI JSON string."""
    choices = response.get("choices") if isinstance(response, Mapping) else getattr(response, "choices", None)
    if not isinstance(choices, list | tuple):
        return None
    messages = []
    for choice in choices:
        message = choice.get("message") if isinstance(choice, Mapping) else getattr(choice, "message", None)
        if message is None:
            continue
        content = message.get("content") if isinstance(message, Mapping) else getattr(message, "content", None)
        messages.append({"role": "assistant", "parts": [{"type": "text", "content": content}]})
    return json.dumps(messages, default=str) if messages else None
