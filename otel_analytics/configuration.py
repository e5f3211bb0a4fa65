"""``configure()``: join (or build) a TracerProvider and add the chosen exporters to it.

- A provider that is already installed (by the app or ``opentelemetry-instrument``) is joined,
  never replaced. Then only the exporters named by ``ANALYTICS_EXPORTERS`` (or ``exporters=``) are
  added, and they export only otel-analytics' own spans: the provider's owner already exports
  everything else, and ``OTEL_TRACES_EXPORTER`` belongs to the owner.
- With no SDK provider installed, one is built from the standard variables (resource, sampler),
  installed globally, and given ``ANALYTICS_EXPORTERS``, else ``OTEL_TRACES_EXPORTER``, else
  ``tracker`` (the local tracker by default).
- Each exporter gets its own ``BatchSpanProcessor``, so a slow one cannot stall another.
- A second call returns the first call's handle and changes nothing.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import FrameType
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from . import runtime as _runtime
from ._fork import rebuild_in_forked_child
from ._guard import warn_once
from .errors import ConfigurationError
from .exporters import build_exporter, build_processor
from .exporters.metrics import MeterSetup, meter_setup
from .metrics import metrics_for
from .runtime import INSTRUMENTATION_SCOPE, Runtime
from .settings import EXPORTER_NAMES, Settings

_logger = logging.getLogger("otel_analytics")
_lock = threading.Lock()
_active: AnalyticsHandle | None = None

# OTEL_TRACES_EXPORTER names this package understands, mapped to ours.
_OTEL_EXPORTER_NAMES = {
    "analytics_tracker": "tracker",
    "console": "console",
    "otlp": "otlp",
    "otlp_proto_http": "otlp",
    "none": "none",
}


class OwnSpansOnly(SpanProcessor):
    """Passes on only otel-analytics' spans: for processors added to a provider we joined.

    Acts only ``on_end`` (``on_start`` is the base class's no-op), so finished interaction spans
    can reach it without a live span (see ``finished_spans``).
    """

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_end(self, span: ReadableSpan) -> None:
        scope = span.instrumentation_scope
        if scope is not None and scope.name == INSTRUMENTATION_SCOPE:
            self._inner.on_end(span)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _Standby:
    """A daemon thread started with the first handle, idle until no thread can be started: at
    interpreter exit Python 3.12 and later refuse to ("can't create new thread at interpreter
    shutdown"), and the flush at exit, which must stay bounded, is the one run there."""

    def __init__(self) -> None:
        self._start()
        rebuild_in_forked_child(self._start)

    def _start(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, args=(self._jobs,), name="otel-analytics-standby", daemon=True).start()

    @staticmethod
    def _serve(jobs: queue.SimpleQueue[Callable[[], None]]) -> None:
        while True:
            jobs.get()()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)


_standby: _Standby | None = None


def _bounded(work: Callable[[], Any], timeout_s: float, name: str) -> bool:
    """Run ``work`` on a daemon thread and wait at most ``timeout_s``: a hung exporter can't hold us."""
    done = threading.Event()
    outcome: list[bool] = []

    def run() -> None:
        try:
            outcome.append(work() is not False)
        except Exception:
            _logger.exception("otel-analytics: %s failed", name)
            outcome.append(False)
        finally:
            done.set()

    try:
        threading.Thread(target=run, name=f"otel-analytics-{name}", daemon=True).start()
    except RuntimeError:  # at interpreter exit (Python 3.12+): the thread started ahead runs it
        if _standby is None:
            run()  # a handle made without configure(), which starts the standby thread
        else:
            _standby.submit(run)
    return done.wait(timeout_s) and all(outcome)


class AnalyticsHandle:
    """What ``configure()`` returns: flush and shut down what it added, within a timeout."""

    def __init__(
        self,
        settings: Settings,
        provider: trace.TracerProvider | None,
        processors: Sequence[SpanProcessor],
        owns_provider: bool,
        exporters: dict[str, SpanExporter] | None = None,
        meters: MeterSetup | None = None,
    ) -> None:
        self.settings = settings
        self.tracer_provider = provider
        self._meters = meters
        self._processors = tuple(processors)
        self._exporters = dict(exporters or {})
        self._owns_provider = owns_provider
        self._shut_down = False
        self._hooked: tuple[str, ...] = ()  # the HTTP libraries whose send this handle hooked
        self._automatic = False  # made by the middleware from the environment: gives way to configure()

    @property
    def exporters(self) -> tuple[str, ...]:
        """Names of the exporters this handle added (empty when disabled or joining with none)."""
        return self.settings.exporters or ()

    @property
    def meter_provider(self) -> MeterProvider | None:
        """The meter provider the GenAI metrics go to (``None``: no metrics are recorded)."""
        return self._meters.provider if self._meters is not None else None

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters of the exporters that keep them: ``{"tracker": {"sent": .., "dropped": ..}}``."""
        out = {}
        for name, exporter in self._exporters.items():
            stats = getattr(exporter, "stats", None)
            if stats is not None and hasattr(stats, "as_dict"):
                out[name] = stats.as_dict()
        return out

    def force_flush(self, timeout: float | None = None) -> bool:
        """Export what is queued; ``False`` if that did not finish within ``timeout`` seconds."""
        timeout_s = self.settings.flush_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout_s
        ok = True
        for processor in self._processors:
            remaining = max(deadline - time.monotonic(), 0.0)
            ok = _bounded(functools.partial(processor.force_flush, int(remaining * 1000)), remaining, "flush") and ok
        if self._meters is not None:  # a collection: the waiting measurements, then every reader's export
            remaining = max(deadline - time.monotonic(), 0.0)
            flush = functools.partial(self._meters.provider.force_flush, remaining * 1000)
            ok = _bounded(flush, remaining, "flush") and ok
        return ok

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and stop this handle's exporters; later API calls go to the global provider."""
        global _active
        with _lock:
            if self._shut_down:
                return True
            self._shut_down = True
            if _active is self:
                _active = None
                _runtime.install(None)
        if self._hooked:
            from . import capture

            capture.uninstall()
        timeout_s = self.settings.flush_timeout_s if timeout is None else timeout
        stopped = _bounded(self._stop, timeout_s, "shutdown")
        self.report_undelivered("at shutdown")
        return stopped

    def _stop(self) -> None:
        for processor in self._processors:
            processor.shutdown()
        meters = self._meters
        if meters is not None:
            if meters.owned:  # its last collection exports what waits
                meters.provider.shutdown()
                for close in meters.closers:
                    close()
            else:  # joined: its owner exports, and now has what waited here
                meters.provider.force_flush()

    def _retire(self) -> None:
        """Give way to a new configuration: flush and stop this handle's exporters (bounded) and
        unhook the capture; the provider and the runtime are the new handle's to set."""
        self._shut_down = True
        if self._hooked:
            from . import capture

            capture.uninstall()
            self._hooked = ()
        _bounded(self._stop, self.settings.flush_timeout_s, "shutdown")

    def report_undelivered(self, when: str) -> bool:
        """Log, with numbers and why, what the exporters could not deliver; ``True`` if anything."""
        reported = False
        for exporter in self._exporters.values():
            report = getattr(exporter, "report_undelivered", None)
            if callable(report):
                reported = report(when) or reported
        return reported

    def flush_on_signals(self, *signals: int) -> None:
        """Flush (within the flush timeout) when the process gets one of ``signals`` (SIGTERM by
        default), then do what was done before: the previous handler, chained, not replaced.

        For processes that stop without the ASGI lifespan the middleware flushes on (a worker, a
        script): Python's default for SIGTERM kills the process at once, and ``atexit`` never
        runs. Call it from the main thread (``signal.signal``'s rule; elsewhere ``ValueError``).
        """
        for number in signals or (signal.SIGTERM,):
            signal.signal(number, _flushing_handler(signal.getsignal(number)))

    def _at_exit(self) -> None:
        if not self._shut_down:
            self.shutdown()


def _flushing_handler(previous: Any) -> Callable[[int, FrameType | None], None]:
    def handler(number: int, frame: FrameType | None) -> None:
        flush_before_exit()
        if callable(previous):
            previous(number, frame)
        elif previous == signal.SIG_DFL:  # what the signal did before: end the process by it
            signal.signal(number, signal.SIG_DFL)
            signal.raise_signal(number)

    return handler


def flush_before_exit(timeout: float | None = None) -> bool:
    """Deliver what analytics holds before the process ends, within the flush timeout.

    The handle's processors, and the processors of a provider otel-analytics joined (the app's,
    or the one ``opentelemetry-instrument`` built): an ASGI server stopping on SIGTERM (uvicorn
    re-raises the signal after its graceful shutdown) never runs ``atexit``. When that flush does
    not finish, what is left is reported with numbers. Never raises.
    """
    handle = _active
    settings = handle.settings if handle is not None else _runtime.current().settings
    if not settings.enabled:
        return True
    timeout_s = settings.flush_timeout_s if timeout is None else timeout
    deadline = time.monotonic() + timeout_s
    ok = True
    if handle is not None:
        ok = handle.force_flush(timeout_s)
    provider = trace.get_tracer_provider()
    if isinstance(provider, SdkTracerProvider) and (handle is None or not handle._owns_provider):
        remaining = max(deadline - time.monotonic(), 0.0)
        flush = functools.partial(provider.force_flush, int(remaining * 1000))
        ok = _bounded(flush, remaining, "flush") and ok
    meters = handle._meters if handle is not None else None
    if meters is not None and not meters.owned:  # the app's meter provider: its export, now
        remaining = max(deadline - time.monotonic(), 0.0)
        ok = _bounded(functools.partial(meters.provider.force_flush, remaining * 1000), remaining, "flush") and ok
    if handle is not None and not ok:
        handle.report_undelivered("at shutdown, after the flush timed out")
    return ok


def configure(
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    **overrides: Any,
) -> AnalyticsHandle:
    """Set up otel-analytics from the environment, with keyword overrides.

    Keywords: the settings of the README's table (``enabled``, ``exporters``, ``tracker_url``,
    ``pricing_file``, ``routes``, ...), each also read from its environment variable.
    ``tracer_provider`` joins that provider instead of the global one; ``meter_provider`` (an SDK
    ``MeterProvider``) records the GenAI metrics into that one. Raises
    ``ConfigurationError`` naming the variable for any bad value.

    A second call returns the first call's handle and changes nothing (a warning names the values
    it ignored; none with no arguments). A configuration the middleware made on its own, from the
    environment, gives way to an explicit call with keywords.
    """
    return _configure(tracer_provider, overrides, automatic=False, meter_provider=meter_provider)


def handle() -> AnalyticsHandle:
    """The live handle (to flush, shut down, read its stats), configuring from the environment
    first if nothing is configured yet, as ``configure()`` with no arguments would."""
    active = _active
    return active if active is not None else _configure(None, {}, automatic=False)


def ensure_configured() -> None:
    """Configure from the environment if nothing is: what the middleware does on first use, so
    that the one line (``instrument_app``) is enough. A bad setting is logged (once) and analytics
    is then off, rather than an error raised into a request."""
    if _active is not None:
        return
    try:
        _configure(None, {}, automatic=True)
    except ConfigurationError as exc:
        warn_once("configure:auto", "otel-analytics is disabled: %s", exc)
        with _lock:
            if _active is None:
                _runtime.install(Runtime.build(Settings(enabled=False), trace.NoOpTracerProvider()))


def _configure(
    tracer_provider: trace.TracerProvider | None,
    overrides: dict[str, Any],
    *,
    automatic: bool,
    meter_provider: MeterProvider | None = None,
) -> AnalyticsHandle:
    global _active, _standby
    with _lock:
        settings = Settings.load(overrides)
        if _standby is None:
            _standby = _Standby()
        active = _active
        if active is not None:
            explicit = bool(overrides) or tracer_provider is not None or meter_provider is not None
            if not active._automatic or not explicit:
                if not automatic:
                    active._automatic = False  # confirmed by the app: it no longer gives way
                    # The keywords given whose values differ: what this call asked for in vain.
                    changed = [name for name in overrides if getattr(settings, name) != getattr(active.settings, name)]
                    if changed:
                        _logger.warning("otel-analytics is already configured; ignoring new values of %s.", changed)
                return active
            # The middleware's configuration from the environment gives way to the app's own.
            _active = None
            reused = active.tracer_provider if active._owns_provider else None
            active._retire()
        else:
            reused = None
        handle = _build(settings, tracer_provider, reused, meter_provider)
        handle._automatic = automatic
        _active = handle
    atexit.register(handle._at_exit)
    if settings.enabled:
        runtime = _runtime.current()
        threading.Thread(target=runtime.prices.warm, name="otel-analytics-prices", daemon=True).start()
    return handle


def _build(
    settings: Settings,
    explicit: trace.TracerProvider | None,
    reused: trace.TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> AnalyticsHandle:
    """``reused``: the provider a configuration that gave way built (installed globally: it is
    this one's to own now)."""
    if not settings.enabled:
        _runtime.install(Runtime.build(settings, trace.NoOpTracerProvider()))
        return AnalyticsHandle(settings, None, (), owns_provider=False)
    if meter_provider is not None and not isinstance(meter_provider, MeterProvider):
        raise ConfigurationError("configure(meter_provider=...) needs an OpenTelemetry SDK MeterProvider.")
    # First: a bad metrics setting changes nothing else.
    meters = meter_setup(settings, _resource(settings), meter_provider)
    provider = explicit if explicit is not None else (reused or trace.get_tracer_provider())
    owns = isinstance(reused, SdkTracerProvider) and explicit is None
    if not isinstance(provider, SdkTracerProvider):
        if explicit is not None:
            raise ConfigurationError("configure(tracer_provider=...) needs an OpenTelemetry SDK TracerProvider.")
        provider = SdkTracerProvider(resource=_resource(settings), shutdown_on_exit=False)
        owns = True
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(provider)
        else:
            _logger.warning("otel-analytics: the installed tracer provider is not the SDK's; using a private one.")
    names = settings.exporters
    if names is None:
        names = _default_exporters() if owns else ()
        settings = replace(settings, exporters=names)
    processors: list[SpanProcessor] = []
    exporters: dict[str, SpanExporter] = {}
    for name in names:
        exporters[name] = build_exporter(name, settings)
    for name, exporter in exporters.items():
        processor = build_processor(name, exporter)
        if not owns:
            processor = OwnSpansOnly(processor)
        provider.add_span_processor(processor)
        processors.append(processor)
    hooked: tuple[str, ...] = ()
    if settings.capture_llm_calls:
        from . import capture

        capture.add_first(provider, capture.JoinForeignGenAISpans())
        hooked = () if capture.installed() else capture.instrument()  # installed by the agent: left to it
    recorder = None
    if meters is not None:
        recorder = metrics_for(meters.provider, with_user_id=settings.metrics_user_id, histograms=meters.histograms)
    _runtime.install(Runtime.build(settings, provider, recorder))
    handle = AnalyticsHandle(settings, provider, processors, owns_provider=owns, exporters=exporters, meters=meters)
    handle._hooked = hooked
    return handle


def _resource(settings: Settings) -> Resource:
    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME itself.
    return Resource.create({"service.name": settings.service_name} if settings.service_name else {})


def _default_exporters() -> tuple[str, ...]:
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if not raw:
        return ("tracker",)
    names: list[str] = []
    for item in filter(None, (part.strip().lower() for part in raw.split(","))):
        if item not in _OTEL_EXPORTER_NAMES:
            raise ConfigurationError(
                f"OTEL_TRACES_EXPORTER={raw!r} names {item!r}, which otel-analytics cannot build; accepted "
                f"values: {', '.join(_OTEL_EXPORTER_NAMES)} (or set ANALYTICS_EXPORTERS to one of "
                f"{', '.join(EXPORTER_NAMES)})."
            )
        mapped = _OTEL_EXPORTER_NAMES[item]
        if mapped == "none":
            return ()
        if mapped not in names:
            names.append(mapped)
    return tuple(names)
