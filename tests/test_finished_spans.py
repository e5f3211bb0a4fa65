"""Spans handed over already finished (``finished_spans``) are exactly what the SDK would build.

Each case records the same interaction twice, through the direct path and through
``start_span(...).end()``, and compares every field the processors and exporters can read,
including the OTLP encoding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.util.types import Attributes

from otel_analytics.context import SessionRef
from otel_analytics.recording import emit_interaction
from otel_analytics.runtime import Runtime
from otel_analytics.settings import Settings
from otel_analytics.usage import Usage
from tests.fake_tracker import FakeTracker

REQUEST_SPAN = SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))


class Collect(SpanProcessor):
    """Every span handed to ``on_end``, sampled or not (acts only on end)."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


class Enriching(SpanProcessor):
    """Sets an attribute on start: it must see a live span."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.started.append(span.name)
        span.set_attribute("enriched", True)


class Annotating(Sampler):
    """Samples, adds an attribute and a trace state entry."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        return SamplingResult(
            Decision.RECORD_AND_SAMPLE, {**(attributes or {}), "sampler.note": "kept"}, TraceState([("oa", "1")])
        )

    def get_description(self) -> str:
        return "Annotating"


class RecordOnly(Sampler):
    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_ONLY, kwargs.get("attributes") or args[4] if len(args) > 4 else None)

    def get_description(self) -> str:
        return "RecordOnly"


def fields(span: ReadableSpan) -> dict[str, Any]:
    """Everything a processor or exporter can read from a span."""
    context = span.context
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind,
        "context": (context.trace_id, context.span_id, context.is_remote, int(context.trace_flags)),
        "trace_state": tuple(context.trace_state.items()),
        "parent": span.parent,
        "attributes": dict(span.attributes or {}),
        "dropped_attributes": span.dropped_attributes,
        "links": [
            (link.context, dict(link.attributes or {}), type(link.attributes), link.dropped_attributes)
            for link in span.links
        ],
        "dropped_links": span.dropped_links,
        "events": list(span.events),
        "dropped_events": span.dropped_events,
        "status": (span.status.status_code, span.status.description),
        "times": (span.start_time, span.end_time),
        "resource": dict(span.resource.attributes),
        "scope": span.instrumentation_scope,
        "json": span.to_json(),
        "otlp": encode_spans([span]).SerializeToString(),
    }


def record_both(
    provider: TracerProvider, monkeypatch: pytest.MonkeyPatch, collect: Collect, **overrides: Any
) -> tuple[ReadableSpan | None, ReadableSpan | None]:
    runtime = Runtime.build(Settings(), provider)
    assert runtime.finished is not None
    session = SessionRef.of("conv-equivalence", "u1")
    arguments: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "provider": "openai",
        "metadata": '{"endpoint":"/api/ask","method":"POST"}',
        "extra": {"gen_ai.request.stream": True},
        "usage": Usage(
            input_tokens=1200,
            output_tokens=300,
            cache_read_tokens=100,
            response_model="gpt-4o-mini-2024-07-18",
            response_id="chatcmpl-1",
            finish_reasons=["stop"],
        ),
        "outcome": "completed",
        "exc": None,
        "start_ns": 1_764_410_000_000_000_000,
        "end_ns": 1_764_410_000_250_000_000,
        "links": [Link(REQUEST_SPAN)],
        # The context the request span's link already holds, as the middleware pins it.
        "pinned": SpanContext(session.trace_id, 0x1234ABCD, False, TraceFlags(TraceFlags.SAMPLED)),
    }
    arguments.update(overrides)
    if arguments["links"] == "prepared":  # made by FinishedSpans.link(), as the middleware does
        arguments["links"] = [runtime.finished.link(REQUEST_SPAN)]
    with monkeypatch.context() as patch:
        # The direct path must not build a live span at all.
        patch.setattr(runtime.tracer, "start_span", lambda *a, **k: pytest.fail("a live span was built"))
        # Links of its own: the SDK's path sets the attributes of the links it is given.
        links = [Link(link.context, link.attributes) for link in arguments["links"]]
        emit_interaction(runtime, "chat", session, **{**arguments, "links": links})
    direct = collect.spans[-1] if collect.spans else None
    count = len(collect.spans)
    emit_interaction(dataclasses.replace(runtime, finished=None), "chat", session, **arguments)
    public = collect.spans[-1] if len(collect.spans) > count else None
    return direct, public


def record_chat(
    runtime: Runtime, session_id: str, links: Sequence[Link] = (), pinned: SpanContext | None = None
) -> SpanContext:
    """A minimal finished chat interaction, through whichever path the runtime takes."""
    return emit_interaction(
        runtime,
        "chat",
        SessionRef.of(session_id, "u1"),
        model="gpt-4o-mini",
        provider="openai",
        metadata=None,
        extra=None,
        usage=Usage(input_tokens=1),
        outcome="completed",
        exc=None,
        start_ns=1,
        end_ns=2,
        links=links,
        pinned=pinned,
    )


def provider_with(collect: Collect, **options: Any) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "equivalence"}), **options)
    provider.add_span_processor(collect)
    return provider


@pytest.mark.parametrize(
    ("options", "overrides"),
    [
        pytest.param({}, {}, id="defaults"),
        pytest.param({"sampler": Annotating()}, {}, id="sampler adds attributes and trace state"),
        pytest.param({"span_limits": SpanLimits(max_span_attributes=5)}, {}, id="attribute count limit"),
        pytest.param({"span_limits": SpanLimits(max_attribute_length=6)}, {}, id="attribute length limit"),
        pytest.param({"span_limits": SpanLimits(max_links=0)}, {}, id="link limit"),
        pytest.param(
            {"span_limits": SpanLimits(max_attribute_length=3, max_link_attributes=1)},
            {"links": [Link(REQUEST_SPAN, {"a": "long value", "b": 2}), Link(REQUEST_SPAN)]},
            id="links with attributes, limited",
        ),
        pytest.param({}, {"extra": {"custom.list": ["a", 1], "custom.float": 1.5}}, id="values the SDK cleans"),
        pytest.param({}, {"pinned": None, "links": []}, id="no pinned id, no link"),
        pytest.param({}, {"links": "prepared"}, id="a link made by FinishedSpans.link"),
        pytest.param({"span_limits": SpanLimits(max_links=0)}, {"links": "prepared"}, id="prepared link, limited"),
        pytest.param({"sampler": RecordOnly()}, {}, id="recorded, not sampled"),
        pytest.param(
            {"sampler": ParentBased(ALWAYS_ON, remote_parent_sampled=Annotating())}, {}, id="parent-based, own delegate"
        ),
        pytest.param(
            {"sampler": ParentBased(ALWAYS_ON, remote_parent_sampled=StaticSampler(Decision.RECORD_ONLY))},
            {},
            id="parent-based, static record-only delegate",
        ),
    ],
)
def test_direct_span_equals_the_sdk_span(
    options: dict[str, Any], overrides: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    collect = Collect()
    direct, public = record_both(provider_with(collect, **options), monkeypatch, collect, **overrides)
    assert direct is not None and public is not None
    left, right = fields(direct), fields(public)
    if "pinned" in overrides:  # fresh ids: everything else is the same
        assert left["context"][1] != right["context"][1]
        for side in (left, right):
            side["context"] = side["context"][:1] + side["context"][2:]
            del side["json"], side["otlp"]
    assert left == right


@pytest.mark.parametrize(
    ("sampler", "kept"),
    [
        pytest.param(None, True, id="sampled: the pinned context is the span's"),
        pytest.param(RecordOnly(), False, id="recorded only: other flags, a context of its own"),
        pytest.param(Annotating(), False, id="the sampler's trace state: a context of its own"),
    ],
)
def test_the_pinned_context_and_a_links_tuple_are_kept_as_they_are(sampler: Sampler | None, kept: bool) -> None:
    # The request span links to the interaction before it exists; the span keeps that very
    # context object when it is the one it gets (one object fewer in every queued span).
    collect = Collect()
    provider = provider_with(collect, **({"sampler": sampler} if sampler else {}))
    runtime = Runtime.build(Settings(), provider)
    assert runtime.finished is not None
    session = SessionRef.of("conv-pinned", "u1")
    pinned = SpanContext(session.trace_id, 0x1234ABCD, False, TraceFlags(TraceFlags.SAMPLED))
    links = (runtime.finished.link(REQUEST_SPAN),)
    context = record_chat(runtime, "conv-pinned", links, pinned)
    span = collect.spans[-1]
    assert span.context is context
    assert (context is pinned) is kept
    assert (context.trace_id, context.span_id) == (pinned.trace_id, pinned.span_id)
    assert span.links is links  # the middleware's tuple, not a copy of it


class Witness(Sampler):
    """Samples, and notes the parent span and the baggage it was shown."""

    def __init__(self) -> None:
        self.seen: list[tuple[SpanContext, object]] = []

    def should_sample(self, parent_context: Context | None, *args: Any, **kwargs: Any) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        self.seen.append((parent, baggage.get_baggage("tenant", parent_context)))
        return SamplingResult(Decision.RECORD_AND_SAMPLE)

    def get_description(self) -> str:
        return "Witness"


def test_a_sampler_sees_the_session_root_and_the_baggage_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    # The direct path builds the sampler's context only when a sampler is asked.
    witness = Witness()
    collect = Collect()
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        direct, public = record_both(provider_with(collect, sampler=witness), monkeypatch, collect)
    finally:
        context.detach(token)
    assert direct is not None and public is not None and fields(direct) == fields(public)
    session = SessionRef.of("conv-equivalence", "u1")
    # (asked once more before them, with no parent, for the session's own sampling decision)
    assert [(parent.span_id, tenant) for parent, tenant in witness.seen[-2:]] == [(session.root_span_id, "acme")] * 2


def test_spans_are_built_by_the_constructor_when_the_sdk_fields_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_analytics import finished_spans

    monkeypatch.setattr(finished_spans, "_READABLE_FIELDS", [*finished_spans._READABLE_FIELDS, "_new_field"])
    assert not finished_spans._readable_fields_known()
    collect = Collect()
    direct, public = record_both(provider_with(collect), monkeypatch, collect)
    assert direct is not None and public is not None and fields(direct) == fields(public)


@pytest.mark.parametrize("known", [True, False], ids=["as one tuple", "by its properties"])
def test_span_contexts_are_read_alike_as_a_tuple_and_by_their_properties(
    known: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_analytics import finished_spans

    assert finished_spans._context_fields_known()  # the installed SDK's: the tuple is what runs
    monkeypatch.setattr(finished_spans, "_CONTEXT_FIELDS_KNOWN", known)
    context = SpanContext(7, 9, True, TraceFlags(1), TraceState([("k", "v")]))
    assert tuple(finished_spans._fields(context)) == (7, 9, True, TraceFlags(1), context.trace_state, True)
    collect = Collect()
    direct, public = record_both(provider_with(collect), monkeypatch, collect)
    assert direct is not None and public is not None and fields(direct) == fields(public)


@pytest.mark.parametrize(
    "sampler",
    [ParentBased(ALWAYS_OFF), ParentBased(ALWAYS_ON, remote_parent_sampled=ALWAYS_OFF), ALWAYS_OFF],
    ids=["session not sampled", "sampled parent, dropping delegate", "always off"],
)
def test_a_dropped_span_is_dropped_by_both_paths(sampler: Sampler, monkeypatch: pytest.MonkeyPatch) -> None:
    collect = Collect()
    direct, public = record_both(provider_with(collect, sampler=sampler), monkeypatch, collect)
    assert direct is None and public is None


def test_only_samplers_that_look_at_the_parents_flags_alone_are_skipped() -> None:
    from otel_analytics.finished_spans import _static_decisions

    keep, drop = Decision.RECORD_AND_SAMPLE, Decision.DROP
    # indexed by 2 * remote + sampled
    assert _static_decisions(ParentBased(ALWAYS_ON)) == (drop, keep, drop, keep)
    assert _static_decisions(ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON)) == (drop, keep, keep, keep)
    assert _static_decisions(ALWAYS_ON) == (keep,) * 4
    assert _static_decisions(ParentBased(ALWAYS_ON, local_parent_sampled=Annotating())) is None
    assert _static_decisions(TraceIdRatioBased(0.5)) is None
    assert _static_decisions(ParentBased(TraceIdRatioBased(0.5))) is not None  # the root is never asked: a parent


class _Subclassed(ParentBased):
    pass


def test_a_subclassed_sampler_is_asked_every_time() -> None:
    from otel_analytics.finished_spans import _static_decisions

    assert _static_decisions(_Subclassed(ALWAYS_ON)) is None


def test_a_processor_acting_on_start_gets_the_live_span() -> None:
    collect, enriching = Collect(), Enriching()
    provider = provider_with(collect)
    provider.add_span_processor(enriching)
    runtime = Runtime.build(Settings(), provider)
    assert runtime.finished is not None and not runtime.finished.usable()
    record_chat(runtime, "conv-enriched")
    assert enriching.started == ["chat gpt-4o-mini"]
    assert collect.spans[0].attributes is not None and collect.spans[0].attributes["enriched"] is True


def test_the_direct_path_follows_processors_added_later() -> None:
    collect = Collect()
    provider = provider_with(collect)
    runtime = Runtime.build(Settings(), provider)
    assert runtime.finished is not None and runtime.finished.usable()
    provider.add_span_processor(Enriching())
    assert not runtime.finished.usable()


def test_configured_exporters_leave_the_direct_path_open(fake_tracker: FakeTracker) -> None:
    from otel_analytics import runtime as _runtime
    from otel_analytics.exporters import build_exporter, build_processor
    from otel_analytics.finished_spans import _end_only
    from otel_analytics.testing import CaptureAnalytics

    settings = Settings(tracker_url=fake_tracker.url)
    assert _end_only(build_processor("tracker", build_exporter("tracker", settings)))
    capture = CaptureAnalytics(exporters=("tracker",), tracker_url=fake_tracker.url)  # joins its provider
    try:
        finished = _runtime.current().finished
        assert finished is not None and finished.usable()
    finally:
        capture.close()


@pytest.mark.parametrize("sampler", [None, RecordOnly(), ParentBased(ALWAYS_OFF)], ids=["sampled", "record", "drop"])
def test_the_sdk_span_metrics_count_both_paths_alike(sampler: Sampler | None, monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")

    def counted(direct: bool) -> dict[tuple[str, tuple[Any, ...]], Any]:
        reader = InMemoryMetricReader()
        options: dict[str, Any] = {"meter_provider": MeterProvider(metric_readers=[reader])}
        if sampler is not None:
            options["sampler"] = sampler
        provider = provider_with(Collect(), **options)
        runtime = Runtime.build(Settings(), provider)
        if not direct:
            runtime = dataclasses.replace(runtime, finished=None)
        for n in range(3):
            record_chat(runtime, f"conv-metrics-{n}")
        data = reader.get_metrics_data()
        points = {}
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    for point in metric.data.data_points:
                        key = (metric.name, tuple(sorted((point.attributes or {}).items())))
                        points[key] = getattr(point, "value", None)
        return points

    direct, public = counted(True), counted(False)
    assert direct == public
    assert direct  # the metrics are on: something was counted


def test_span_metrics_that_are_off_are_not_called(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a meter provider asking for them the SDK's span metrics do nothing: skipped.
    from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics

    collect = Collect()
    runtime = Runtime.build(Settings(), provider_with(collect))
    monkeypatch.setattr(NoOpTracerMetrics, "start_span", lambda *args: pytest.fail("no-op metrics called"))
    record_chat(runtime, "conv-metrics-off")
    assert len(collect.spans) == 1


@pytest.mark.parametrize("limits", [SpanLimits(), SpanLimits(max_links=1), SpanLimits(max_link_attributes=0)])
def test_add_link_on_a_live_span_equals_the_sdks(limits: SpanLimits, caplog: pytest.LogCaptureFixture) -> None:
    from otel_analytics.finished_spans import add_link

    collect = Collect()
    tracer = provider_with(collect, span_limits=limits).get_tracer("links")
    back = SpanContext(0x1, 0x2, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    for link in (lambda span, context: span.add_link(context), add_link):
        span = tracer.start_span("request", links=[Link(REQUEST_SPAN)])
        link(span, back)
        link(span, SpanContext(0, 0, False))  # invalid: not added
        span.end(end_time=10)
        link(span, back)  # ended: refused, with the SDK's warning
    sdk, ours = (fields(span) for span in collect.spans)
    for side in (sdk, ours):
        del side["context"], side["json"], side["otlp"], side["times"]
    assert ours == sdk
    assert sum("ended span" in record.getMessage() for record in caplog.records) == 2
