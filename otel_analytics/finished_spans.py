"""Hand a span that is already over straight to the provider's processors.

The middleware learns everything about an interaction before it records it, so it has no use
for a live span: ``tracer.start_span(...).end()`` would build one only to freeze it again, and
on this kind of machine that round trip (the SDK re-validates every attribute twice, locks,
builds bounded containers) costs ~70 µs, most of the middleware's whole budget. Building the
:class:`ReadableSpan` the processors receive costs ~10 µs.

It must not change what anyone observes, so it is used only where it is provably the same:
the SDK tracer has the internals read below (else the public path), the tracer is enabled, and
every processor only acts ``on_end`` (a processor that enriches spans ``on_start`` or
``_on_ending`` sees the public path's live span). The sampler is asked exactly as the SDK asks
it (the SDK's own parent-flag samplers, the default among them, are answered as they would
answer), span limits are applied the same way, and attribute values of other types than the plain
ones go through the SDK's own cleaning. ``tests/test_finished_spans.py`` compares both paths
field by field against the installed SDK.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, SynchronousMultiSpanProcessor, Tracer
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, StaticSampler
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, TraceFlags, TraceState
from opentelemetry.util.types import Attributes, AttributeValue

_PLAIN = frozenset({str, int, float, bool})
_PLAIN_OR_TUPLE = _PLAIN | {tuple}
SAMPLED = TraceFlags(TraceFlags.SAMPLED)  # shared: one object fewer per span
NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_UNSET = Status()  # read-only: one for all spans, as fewer objects per queued span mean less GC work
# Processor hooks known to do nothing; a processor whose on_start/_on_ending is anything else
# sends spans down the public path.
_NOOP_HOOKS = frozenset(
    {
        SpanProcessor.on_start,
        SpanProcessor._on_ending,
        BatchSpanProcessor.on_start,
        BatchSpanProcessor._on_ending,
        SimpleSpanProcessor.on_start,
        SimpleSpanProcessor._on_ending,
    }
)


FINISHED_SPANS_OK = "otel_analytics_finished_spans_ok"
"""A processor class attribute: ``True`` says its ``on_start`` need not see spans that are
started and ended at once (it tracks live spans, say), so they may skip the live span."""


def _end_only(processor: SpanProcessor) -> bool:
    cls = type(processor)
    if getattr(cls, FINISHED_SPANS_OK, False) is True:
        return True
    return getattr(cls, "on_start", None) in _NOOP_HOOKS and getattr(cls, "_on_ending", None) in _NOOP_HOOKS


def _plain(attributes: Mapping[str, Any]) -> bool:
    """Whether every value is one the SDK would keep as it is (no cleaning, no copy)."""
    kinds = set(map(type, attributes.values()))
    if not kinds <= _PLAIN_OR_TUPLE:
        return False
    if tuple in kinds:
        return all(type(v) is str for value in attributes.values() if type(value) is tuple for v in value)
    return True


_PARENT_BASED_DELEGATES = (  # in the order of _static_decisions' index: (remote, sampled)
    "_local_parent_not_sampled",
    "_local_parent_sampled",
    "_remote_parent_not_sampled",
    "_remote_parent_sampled",
)


def _static_decisions(sampler: object) -> tuple[Decision, ...] | None:
    """The decisions of a sampler that looks only at the parent's flags, by ``2 * remote + sampled``.

    That is the SDK's default (``ParentBased(ALWAYS_ON)``) and any ``ParentBased`` whose delegates
    are the SDK's static samplers: for a valid parent such a sampler returns the delegate's fixed
    decision, the span's own attributes and the parent's trace state, whatever else it is given,
    so asking it per span is not needed. ``None``: any other sampler, asked per span.
    """
    if type(sampler) is StaticSampler:
        delegates: list[object] = [sampler] * 4
    elif type(sampler) is ParentBased:
        delegates = [getattr(sampler, name, None) for name in _PARENT_BASED_DELEGATES]
    else:
        return None
    decisions = tuple(getattr(delegate, "_decision", None) for delegate in delegates)
    if all(type(delegate) is StaticSampler for delegate in delegates) and all(
        isinstance(decision, Decision) for decision in decisions
    ):
        return decisions  # type: ignore[return-value]
    return None


def _context_fields_known() -> bool:
    """Whether a ``SpanContext`` is the tuple ``(trace_id, span_id, is_remote, trace_flags,
    trace_state, is_valid)``, as the SDK has built it so far (checked, not assumed)."""
    probe = SpanContext(1, 2, True, TraceFlags(1), TraceState([("k", "v")]))
    return tuple(probe) == (probe.trace_id, probe.span_id, True, probe.trace_flags, probe.trace_state, True)


_CONTEXT_FIELDS_KNOWN: bool | None = None


def _fields(context: SpanContext) -> tuple[int, int, bool, TraceFlags, TraceState, bool]:
    """A span context's fields, read as one tuple: each of its properties is a Python call
    (~600 instructions; an emitted span read a dozen of them), the tuple it is holds them all."""
    global _CONTEXT_FIELDS_KNOWN
    if type(context) is SpanContext:
        if _CONTEXT_FIELDS_KNOWN is None:
            _CONTEXT_FIELDS_KNOWN = _context_fields_known()
        if _CONTEXT_FIELDS_KNOWN:
            return context
    return (
        context.trace_id,
        context.span_id,
        context.is_remote,
        context.trace_flags,
        context.trace_state,
        context.is_valid,
    )


_new_object = object.__new__
_READABLE_FIELDS = [
    "_name",
    "_context",
    "_kind",
    "_instrumentation_info",
    "_instrumentation_scope",
    "_parent",
    "_start_time",
    "_end_time",
    "_attributes",
    "_events",
    "_links",
    "_resource",
    "_status",
]


def _readable_fields_known() -> bool:
    """Whether ``ReadableSpan.__init__`` sets exactly these fields, in this order, and nothing else
    (a new SDK version that adds one sends spans through the constructor again)."""
    try:
        probe = ReadableSpan(name="probe", resource=Resource.get_empty())
    except Exception:
        return False
    return type(probe).__init__ is ReadableSpan.__init__ and list(vars(probe)) == _READABLE_FIELDS


try:  # the class of the SDK's live spans (``Span`` is only its base)
    from opentelemetry.sdk.trace import _Span as _LiveSpan
except ImportError:  # pragma: no cover - another SDK layout: every span takes add_link()
    _LiveSpan = None  # type: ignore[assignment,misc]
try:  # what the SDK's span metrics are when no meter provider asks for them: calls that do nothing
    from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics as _NoOpTracerMetrics
except ImportError:  # pragma: no cover - an SDK without span metrics
    _NoOpTracerMetrics = None  # type: ignore[assignment,misc]
_no_attributes: tuple[SpanLimits | None, BoundedAttributes | None] = (None, None)


def _empty_link_attributes(limits: SpanLimits) -> BoundedAttributes:
    """The attributes ``add_link`` gives a link that has none, made once per limits (immutable,
    so one set serves every such link; building one costs a lock and a dict)."""
    global _no_attributes
    seen, attributes = _no_attributes
    if seen is not limits or attributes is None:
        attributes = BoundedAttributes(
            limits.max_link_attributes, None, max_value_len=limits.max_attribute_length, immutable=True
        )
        _no_attributes = (limits, attributes)
    return attributes


def add_link(span: trace.Span, context: SpanContext) -> None:
    """``span.add_link(context)``. For the SDK's own live span, the link gets the shared empty
    attribute set instead of a new one each time (~5k of the ~19k instructions a link costs);
    the SDK's ``_add_link`` still takes the span's lock, refuses an ended span and counts drops."""
    limits = getattr(span, "_limits", None) if type(span) is _LiveSpan else None
    if not isinstance(limits, SpanLimits) or not context.is_valid:
        span.add_link(context)
        return
    span._add_link(Link(context, _empty_link_attributes(limits)))  # type: ignore[attr-defined]


class FinishedSpans:
    """Emits finished spans for one SDK tracer, or says it can't (``emit`` returns ``None``)."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        self._scope = getattr(tracer, "_instrumentation_scope", None)
        self._limits = getattr(tracer, "_span_limits", None)
        self._is_enabled = getattr(tracer, "_is_enabled", None)
        metrics = getattr(tracer, "_tracer_metrics", None)  # the SDK's own span metrics, if any
        self._metrics = None if type(metrics) is _NoOpTracerMetrics else metrics  # off: two calls fewer
        self._processors_seen: object = None
        self._direct = False
        # Links without attributes (the common case) all get the one shared, immutable, empty set.
        limits = self._limits
        self._no_link_attributes = _empty_link_attributes(limits) if isinstance(limits, SpanLimits) else None
        self._sampler_seen: object = None
        self._static: tuple[Decision, ...] | None = None
        self._direct_processors: tuple[SpanProcessor, ...] | None = None
        self._fields_known = _readable_fields_known()

    def _link_attributes(self, attributes: Attributes) -> BoundedAttributes:
        limits = self._limits
        assert limits is not None
        if not attributes and self._no_link_attributes is not None:
            return self._no_link_attributes
        return BoundedAttributes(
            limits.max_link_attributes, attributes, immutable=True, max_value_len=limits.max_attribute_length
        )

    def link(self, context: SpanContext) -> Link:
        """A link without attributes, in the form the SDK would keep it (emit() takes it as is)."""
        if self._limits is None:
            return Link(context)
        return Link(context, self._link_attributes(None))

    def usable(self) -> bool:
        """Whether this tracer's spans can skip the live span (re-checked when processors change)."""
        if self._scope is None or self._limits is None or self._is_enabled is None:
            return False
        processors = getattr(self._tracer.span_processor, "_span_processors", None)
        if processors is not self._processors_seen:
            self._processors_seen = processors
            self._direct = isinstance(processors, tuple) and all(_end_only(p) for p in processors)
            # The SDK's synchronous multi-processor only loops over them: so can we, a call fewer.
            synchronous = type(self._tracer.span_processor) is SynchronousMultiSpanProcessor
            self._direct_processors = processors if self._direct and synchronous else None
        return self._direct and bool(self._is_enabled())

    def emit(
        self,
        name: str,
        parent: otel_context.Context | trace.Span,
        kind: SpanKind,
        attributes: dict[str, AttributeValue],
        links: Sequence[Link],
        start_ns: int,
        end_ns: int,
        pinned: SpanContext | None,
        plain: bool = False,
    ) -> SpanContext | None:
        """Record the span as ``start_span(...)`` then ``end(end_ns)`` would, and return its
        context (that of a dropped span too, as the SDK's); ``None``: not done, use the SDK.

        ``parent``: a context, or the parent span itself, which stands for the current context
        with that span in it (built only for a sampler that is asked: ~5k instructions saved).
        ``pinned``: the span's context, fixed beforehand because another span already links to
        it: its span id is kept, and the object itself when the sampler's flags and trace state
        are the ones it holds (one object fewer for every queued span to hold and the collector
        to walk). ``plain``: the caller built every value as a str, int, float, bool or tuple of
        str, so they need no check (it costs ~16k instructions for an interaction's ~18 values).
        """
        if not self.usable():
            return None
        tracer = self._tracer
        if isinstance(parent, otel_context.Context):  # a dict: cheaper to test than the Span ABC
            parent_span = trace.get_current_span(parent)
            parent_context = parent_span.get_span_context()
        else:
            parent_span = parent
            parent_context = parent.get_span_context()
        trace_id, _, parent_remote, parent_flags, parent_state, parent_valid = _fields(parent_context)
        if not parent_valid or parent_flags & ~TraceFlags.SAMPLED:
            # A root span, or a parent with other flags (W3C's random-trace-id bit): trace ids
            # and those flags are the SDK's business. Session roots and interactions carry neither.
            return None
        sampler = tracer.sampler
        if sampler is not self._sampler_seen:
            self._sampler_seen, self._static = sampler, _static_decisions(sampler)
        static = self._static
        if static is not None:  # what the sampler would answer, without building its answer
            decision = static[2 * parent_remote + (parent_flags & TraceFlags.SAMPLED)]
            trace_state: TraceState | None = parent_state
            final: Mapping[str, Any] = attributes
        else:
            if not isinstance(parent, otel_context.Context):
                parent = trace.set_span_in_context(parent_span, otel_context.get_current())
            sampling = sampler.should_sample(parent, trace_id, name, kind, attributes, links)
            decision, trace_state = sampling.decision, sampling.trace_state
            final = sampling.attributes or {}
        flags = SAMPLED if decision is Decision.RECORD_AND_SAMPLE else NOT_SAMPLED
        context: SpanContext | None = None
        span_id = None
        if pinned is not None:
            pinned_trace, span_id, pinned_remote, pinned_flags, pinned_state, _ = _fields(pinned)
            if pinned_trace == trace_id and pinned_flags == flags and pinned_state is trace_state and not pinned_remote:
                context = pinned
        if context is None:
            context = SpanContext(  # positional: (trace_id, span_id, is_remote, trace_flags, trace_state)
                trace_id,
                span_id if span_id is not None else tracer.id_generator.generate_span_id(),
                False,
                flags,
                trace_state,
            )
        # The SDK's own span metrics (when a meter provider is set) count started spans, dropped
        # ones included, and ended recording ones: the same calls, in the same order.
        metrics = self._metrics
        record_end = metrics.start_span(parent_context, decision) if metrics is not None else None
        if decision is Decision.DROP:
            return context
        limits = self._limits
        assert limits is not None
        if (
            limits.max_span_attribute_length is not None
            or (limits.max_span_attributes is not None and len(final) > limits.max_span_attributes)
            or not ((plain and final is attributes) or _plain(final))
        ):
            final = BoundedAttributes(
                limits.max_span_attributes, final, immutable=True, max_value_len=limits.max_span_attribute_length
            )
        prepared = self._no_link_attributes  # never None here: usable() said so
        if len(links) == 1 and links[0].attributes is prepared and links[0].context.is_valid:
            # The middleware's one link, made by link(): its tuple is kept as it is.
            kept_links: Sequence[Link] = links if type(links) is tuple else (links[0],)
        else:
            kept_links = tuple(
                link if link.attributes is prepared else Link(link.context, self._link_attributes(link.attributes))
                for link in links
                if link and link.context.is_valid
            )
        if limits.max_links is not None and len(kept_links) > limits.max_links:
            kept_links = BoundedList.from_seq(limits.max_links, kept_links)
        span = self._readable(name, context, parent_context, final, kept_links, kind, start_ns, end_ns)
        if record_end is not None:
            record_end()
        processors = self._direct_processors
        if processors is not None:
            for processor in processors:
                processor.on_end(span)
        else:
            tracer.span_processor.on_end(span)
        return context

    def _readable(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext,
        attributes: Mapping[str, Any],
        links: Sequence[Link],
        kind: SpanKind,
        start_ns: int,
        end_ns: int,
    ) -> ReadableSpan:
        """The ``ReadableSpan(...)`` the SDK's ``end()`` builds. Its fields are set directly, in
        the order ``__init__`` sets them, when that is all ``__init__`` does (checked against the
        installed SDK): a call with thirteen keywords costs ~10k instructions, the stores ~1k."""
        tracer = self._tracer
        if not self._fields_known:
            return ReadableSpan(
                name=name,
                context=context,
                parent=parent,
                resource=tracer.resource,
                attributes=attributes,
                links=links,
                kind=kind,
                status=_UNSET,
                start_time=start_ns,
                end_time=end_ns,
                instrumentation_info=tracer.instrumentation_info,
                instrumentation_scope=self._scope,
            )
        span: Any = _new_object(ReadableSpan)
        span._name = name
        span._context = context
        span._kind = kind
        span._instrumentation_info = tracer.instrumentation_info
        span._instrumentation_scope = self._scope
        span._parent = parent
        span._start_time = start_ns
        span._end_time = end_ns
        span._attributes = attributes
        span._events = ()
        span._links = links
        span._resource = tracer.resource
        span._status = _UNSET
        return span  # type: ignore[no-any-return]
