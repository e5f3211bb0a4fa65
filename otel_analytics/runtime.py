"""The live state the API reads: settings, tracer, price book; set by ``configure()``.

Without ``configure()``, the API emits through the global tracer provider with settings read
from the environment, as an OpenTelemetry instrumentation library would: whoever set up the SDK
(the app, ``opentelemetry-instrument``) decides where spans go.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.sdk.trace import Tracer
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from ._guard import warn_once
from ._version import __version__
from .errors import ConfigurationError
from .finished_spans import FinishedSpans
from .metrics import GenAIMetrics
from .pricing import NewNameBudget, PriceBook
from .settings import Settings

INSTRUMENTATION_SCOPE = "otel_analytics"

# Set while a session's root span is being created, so that span gets the derived ids.
_pinned_ids: ContextVar[tuple[int, int] | None] = ContextVar("otel_analytics_pinned_ids", default=None)


class _PrivateRandomIds(IdGenerator):
    """Ids from a generator of our own, seeded from the OS and reseeded in forked children.

    The SDK's default ``RandomIdGenerator`` draws from the ``random`` module's global generator, so
    an app that calls ``random.seed(42)`` (common in ML code) makes the same span ids in every run,
    and the tracker, which stores one interaction per span id, would drop later runs as retries.
    A private ``random.Random`` is immune to that and costs ~0.1 µs an id (the OS's CSPRNG, one
    system call per id, ~1.4 µs); the reseed after ``fork`` keeps pre-forked workers apart.
    """

    def __init__(self) -> None:
        self._random = random.Random()
        os.register_at_fork(after_in_child=self._random.seed)

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1


_shared_ids: _PrivateRandomIds | None = None


def _private_ids() -> _PrivateRandomIds:
    """One private generator per process (each registers a fork hook, which can't be removed)."""
    global _shared_ids
    if _shared_ids is None:
        _shared_ids = _PrivateRandomIds()
    return _shared_ids


class PinnableIdGenerator(IdGenerator):
    """The provider's id generator (a private generator in place of the SDK default), except while
    :func:`pinned_ids` is active."""

    def __init__(self, inner: IdGenerator) -> None:
        self._inner = _private_ids() if type(inner) is RandomIdGenerator else inner

    def generate_span_id(self) -> int:
        pinned = _pinned_ids.get()
        return pinned[1] if pinned is not None else self._inner.generate_span_id()

    def generate_trace_id(self) -> int:
        pinned = _pinned_ids.get()
        return pinned[0] if pinned is not None else self._inner.generate_trace_id()


@contextmanager
def pinned_ids(trace_id: int, span_id: int) -> Iterator[None]:
    token = _pinned_ids.set((trace_id, span_id))
    try:
        yield
    finally:
        _pinned_ids.reset(token)


@dataclass(eq=False)
class Runtime:
    settings: Settings
    tracer: trace.Tracer
    prices: PriceBook
    sampler: Sampler | None
    """The provider's sampler, asked once per session for the session's sampling decision."""
    can_pin_ids: bool
    """Whether session root spans get their derived span id (needs an SDK provider)."""
    provider: trace.TracerProvider
    finished: FinishedSpans | None = None
    """Emits spans that are over already without a live span, where that changes nothing."""
    metrics: GenAIMetrics | None = None
    """Where the GenAI metrics go; ``None``: none are recorded."""
    _sampled: dict[int, bool] = field(default_factory=dict, repr=False)
    _roots: dict[int, trace.NonRecordingSpan] = field(default_factory=dict, repr=False)

    def session_root(self, trace_id: int, root_span_id: int) -> trace.NonRecordingSpan:
        """The session root's stand-in span (remote, with the session's sampled flag), remembered."""
        found = self._roots.get(trace_id)
        if found is None:
            flags = TraceFlags(TraceFlags.SAMPLED if self.session_sampled(trace_id) else TraceFlags.DEFAULT)
            found = trace.NonRecordingSpan(SpanContext(trace_id, root_span_id, is_remote=True, trace_flags=flags))
            if len(self._roots) >= 8192:
                self._roots.clear()
            self._roots[trace_id] = found
        return found

    def new_span_id(self) -> int:
        """A span id from the tracer's generator (for a span built later, with :func:`pinned_ids`)."""
        assert isinstance(self.tracer, Tracer)
        generator = self.tracer.id_generator
        if type(generator) is PinnableIdGenerator:  # nothing is pinned here: ask its own generator
            generator = generator._inner
        return generator.generate_span_id()

    def session_sampled(self, trace_id: int) -> bool:
        """The sampler's decision for a session's trace, asked once per session (bounded memory).

        Trace-id samplers are deterministic anyway; remembering also keeps any other sampler
        consistent within a conversation, as a trace should be.
        """
        found = self._sampled.get(trace_id)
        if found is not None:
            return found
        sampled = True
        if self.sampler is not None:
            decision = self.sampler.should_sample(None, trace_id, "session", SpanKind.INTERNAL)
            sampled = decision.decision is Decision.RECORD_AND_SAMPLE
        if len(self._sampled) >= 8192:
            self._sampled.clear()
        self._sampled[trace_id] = sampled
        return sampled

    @classmethod
    def build(cls, settings: Settings, provider: trace.TracerProvider, metrics: GenAIMetrics | None = None) -> Runtime:
        tracer = provider.get_tracer(INSTRUMENTATION_SCOPE, __version__)
        can_pin = isinstance(provider, SdkTracerProvider) and isinstance(tracer, Tracer)
        if can_pin:
            assert isinstance(tracer, Tracer)
            # The SDK caches one tracer per scope; this scope is ours alone.
            if not isinstance(tracer.id_generator, PinnableIdGenerator):
                tracer.id_generator = PinnableIdGenerator(tracer.id_generator)
        sampler = provider.sampler if isinstance(provider, SdkTracerProvider) else None
        finished = FinishedSpans(tracer) if can_pin and isinstance(tracer, Tracer) else None
        return cls(
            settings,
            tracer,
            PriceBook(settings.pricing_file, budget=NewNameBudget.per_second_of(settings.new_models_per_s)),
            sampler,
            can_pin,
            provider,
            finished,
            metrics,
        )


_lock = threading.Lock()
_configured: Runtime | None = None
_default: tuple[object, Runtime] | None = None


def current() -> Runtime:
    """The runtime of the active ``configure()`` call, else one over the global provider."""
    runtime = _configured
    if runtime is not None:
        return runtime
    global _default
    provider = trace.get_tracer_provider()
    default = _default
    if default is not None and default[0] is provider:
        return default[1]
    with _lock:
        try:
            settings = Settings.load()
        except ConfigurationError as exc:  # no configure() to raise from: never break the app
            warn_once("settings", "otel-analytics is disabled: %s", exc)
            settings = Settings(enabled=False)
        default_runtime = Runtime.build(settings, provider, _joined_metrics(settings))
        _default = (provider, default_runtime)
    return default_runtime


def install(runtime: Runtime | None) -> None:
    global _configured
    _configured = runtime


def _joined_metrics(settings: Settings) -> GenAIMetrics | None:
    """Without ``configure()``: the metrics go to the global meter provider when it is the SDK's
    and something reads it, as an instrumentation library's would."""
    if not settings.enabled or not settings.metrics:
        return None
    from opentelemetry import metrics as otel_metrics
    from opentelemetry.sdk.metrics import MeterProvider

    from .exporters.metrics import joinable
    from .metrics import metrics_for

    provider = otel_metrics.get_meter_provider()
    if not isinstance(provider, MeterProvider) or not joinable(provider):
        return None
    return metrics_for(provider, with_user_id=settings.metrics_user_id)
