"""The tracker exporter: analytics spans onto the tracker's HTTP API (``shared/tracker-api.md``).

- One pooled ``httpx`` transport (keep-alive; connect and read timeouts from ``ANALYTICS_TIMEOUT_S``).
- Each span is mapped and JSON-encoded once, into an :class:`EncodedCall`: by the tracker's
  processor, in batches on its own thread, before the calls wait to be sent
  (``tracker_processor``); or here, when the spans come from any other processor (the SDK's
  own, under ``OTEL_TRACES_EXPORTER=analytics_tracker``).
- Session start/end spans go to the session routes; interaction spans to the batch route, or one
  by one when the tracker answers the batch route with 404/405 (remembered for the process).
- Before the first interaction of a session it has not started, it sends the (idempotent)
  session start, which the deployed worker's foreign key needs. An end for a session the tracker
  does not know (404) is preceded by a start and sent again.
- Retries 429, 5xx and transport errors with capped exponential backoff and full jitter,
  honouring ``Retry-After``, within ``ANALYTICS_RETRY_BUDGET_S`` per export; never retries other
  4xx. Each interaction carries ``Idempotency-Key`` (its span id), so a retried request is never
  counted twice by the local tracker.
- Never raises: ``export`` returns ``FAILURE`` and counts what was lost (see :attr:`stats`); each
  kind of failure is logged once, never once per span. It runs on the batch processor's thread,
  with instrumentation suppressed so its own HTTP calls are never traced.

Built with no arguments (as the SDK's ``OTEL_TRACES_EXPORTER=analytics_tracker`` path does), it
reads its settings from the environment.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpx
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .._fork import rebuild_in_forked_child
from .._guard import warn_once
from .._json import dumps, loads
from ..contract import (
    INTERACTION,
    INTERACTION_BATCH,
    MAX_BATCH,
    SESSION_END,
    SESSION_START,
    record_from_readable,
    start_call,
    to_call,
)
from ..errors import ConfigurationError
from ..settings import Settings
from .daemon_pool import DaemonPool

_logger = logging.getLogger("otel_analytics")
_SUPPRESS = otel_context._SUPPRESS_INSTRUMENTATION_KEY  # the key every OTel instrumentation checks
_MAX_STARTED = 100_000
_ROUTES = (SESSION_START, SESSION_END, INTERACTION, INTERACTION_BATCH)
_BACKOFF_BASE_S = 0.25
# Jitter from the OS, not the random module: an app's random.seed() must not make every worker
# retry in step, and the module's state is the app's (hypothesis checks it, say).
_JITTER = random.SystemRandom()
_BACKOFF_CAP_S = 8.0
UNREACHABLE_WARNING_S = 30.0
"""How long the tracker may fail to answer before a warning says so (with numbers)."""
UNREACHABLE_REPEAT_S = 300.0
"""How often that warning repeats while the outage lasts."""


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Final(Exception):
    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class EncodedCall(NamedTuple):
    """One tracker call, its body already JSON: what waits in the tracker processor's backlog.

    Bytes and strings only (about 0.6 KB for an interaction, half a queued ``ReadableSpan``, and
    nothing for the garbage collector to walk), so a long queue of them stays small.
    """

    route: str
    payload: bytes
    session_id: str
    user_id: str
    start_time: str
    """An interaction's timestamp, a session's start: what an implicit session start needs."""
    key: str | None = None
    """The interaction's ``Idempotency-Key``."""


@dataclass
class TrackerStats:
    """Items (sessions starts/ends and interactions) by what happened to them."""

    sent: int = 0
    retried: int = 0
    """Retry attempts made (requests, not items)."""
    dropped: int = 0
    """Given up after retryable failures outlasted the retry budget (or at shutdown)."""
    failed: int = 0
    """Refused by the tracker (4xx other than 429) or not sendable: never retried."""
    ended: int = 0
    """Spans handed to the tracker processor (counted when ``configure()`` built it)."""
    received: int = 0
    """Spans taken from the processor's queue (mapped, or sent)."""
    backlog: int = 0
    """Encoded calls waiting to be sent (the tracker processor's second queue)."""
    sending: int = 0
    """Encoded calls taken from that backlog and not settled yet (sent, or retried within the
    budget): without it, what a down tracker holds would be counted nowhere until it gives up."""
    overflowed: int = 0
    """Encoded calls pushed out of that full backlog, oldest first."""
    undelivered_interactions: int = 0
    """Interactions dropped or refused (of ``dropped`` and ``failed``), for the loss report."""
    undelivered_sessions: int = 0
    """Session starts and ends dropped or refused."""
    last_problem: str = ""
    """Why the last of them was not delivered."""

    @property
    def waiting(self) -> int:
        """Calls and spans still queued or being sent."""
        return max(self.ended - self.received, 0) + self.backlog + self.sending

    def as_dict(self) -> dict[str, int]:
        counts = {"sent": self.sent, "retried": self.retried, "dropped": self.dropped, "failed": self.failed}
        if self.ended:
            # Still queued, or dropped by a full queue (after a flush: dropped).
            counts["queued_or_lost"] = max(self.ended - self.received, 0) + self.backlog + self.overflowed
            counts["sending"] = self.sending
        return counts


def check_tracker_url(url: str, allow_insecure: bool) -> None:
    """Refuse plain HTTP to anything but loopback: the token and the data would travel in clear."""
    parts = urlsplit(url)
    if parts.scheme == "https" or allow_insecure:
        return
    host = parts.hostname or ""
    try:
        loopback = ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConfigurationError(
            f"ANALYTICS_TRACKER_URL={url!r} is plain http:// to a host that is not loopback; use https://, "
            "or set ANALYTICS_TRACKER_ALLOW_INSECURE=true to send in clear anyway."
        )


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _compact(payload: bytes) -> bytes:
    """A right-sized copy: orjson's bytes keep their whole output buffer (4 KB for a 0.3 KB
    body since orjson 3.12), which a queue of them would hold on to; the copy costs ~0.2 µs."""
    return bytes(memoryview(payload))


def _implicit_start(session_id: str, user_id: str, start_time: str) -> EncodedCall:
    call = start_call(session_id, user_id, start_time)
    return EncodedCall(SESSION_START, dumps(call.body), session_id, user_id, start_time)


class TrackerSpanExporter(SpanExporter):
    """Send analytics spans to an analytics tracker. Keyword arguments override the environment.

    Args:
        url: tracker base URL (``ANALYTICS_TRACKER_URL``, default the local tracker's).
        token: bearer token (``ANALYTICS_TRACKER_TOKEN``); sent only when set.
        timeout_s: connect/read timeout per request (``ANALYTICS_TIMEOUT_S``).
        retry_budget_s: how long one export may keep retrying (``ANALYTICS_RETRY_BUDGET_S``).
        send_costs: send the span's own cost estimate (``ANALYTICS_SEND_COSTS``).
        transport: an ``httpx`` transport (tests: ``httpx.MockTransport``, ASGI transports).
        concurrency: requests in flight at once within one export (default 20: the tracker
            processor's batch of 2,000 goes out as twenty batch requests in one round trip, so a
            slow tracker costs one latency per export, not two). Threads are started only when
            an export has more than one request to send.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        token: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
        send_costs: bool | None = None,
        allow_insecure: bool | None = None,
        transport: httpx.BaseTransport | None = None,
        concurrency: int = 20,
        settings: Settings | None = None,
    ) -> None:
        settings = settings or Settings.load()
        self.url = (url or settings.tracker_url).rstrip("/")
        allow = settings.tracker_allow_insecure if allow_insecure is None else allow_insecure
        check_tracker_url(self.url, allow)
        token = token if token is not None else settings.tracker_token
        self._retry_budget_s = settings.retry_budget_s if retry_budget_s is None else retry_budget_s
        self._send_costs = settings.send_costs if send_costs is None else send_costs
        timeout = settings.timeout_s if timeout_s is None else timeout_s
        headers = {"Content-Type": "application/json", "User-Agent": "otel-analytics"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._own_transport = transport is None
        self._transport = transport or self._new_transport(concurrency)
        # Requests are built from parts made once (URL per route, headers, timeouts) and go
        # straight to the transport: the tracker needs no redirects, cookies, auth flows or hooks.
        # Skipping httpx.Client's send saved a third of httpx's per-request CPU, and skipping its
        # build_request (URL merging, header copies) a quarter of the rest.
        self._headers = httpx.Headers(headers)
        self._extensions = {"timeout": httpx.Timeout(timeout).as_dict()}
        self._urls = {route: httpx.URL(self.url + route) for route in _ROUTES}
        self._pool = DaemonPool(concurrency, "otel-analytics-tracker")
        rebuild_in_forked_child(self._after_fork_in_child)
        self._concurrency = concurrency
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._started: OrderedDict[str, None] = OrderedDict()
        self._batch_supported = True
        self.stats = TrackerStats()
        self.unreachable_warning_s = UNREACHABLE_WARNING_S
        self._failing_since: float | None = None
        self._warned_at = -math.inf

    @staticmethod
    def _new_transport(concurrency: int) -> httpx.HTTPTransport:
        limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
        return httpx.HTTPTransport(limits=limits)

    def _after_fork_in_child(self) -> None:
        """A forked worker gets its own threads, lock and connections: the parent's threads do not
        exist in the child, and its pooled sockets are the parent's."""
        self._pool = DaemonPool(self._concurrency, "otel-analytics-tracker")
        self._lock = threading.Lock()
        stopped, self._stopping = self._stopping.is_set(), threading.Event()
        if stopped:
            self._stopping.set()
        if self._own_transport:
            self._transport = self._new_transport(self._concurrency)

    # --- SpanExporter ---------------------------------------------------------------------------
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.stats.received += len(spans)
        return self.send(spans)

    def send(self, calls: Sequence[ReadableSpan | EncodedCall]) -> SpanExportResult:
        """Send calls encoded by :meth:`encode_all` (the tracker processor's), or spans, now."""
        if self._stopping.is_set():
            return SpanExportResult.FAILURE
        deadline = time.monotonic() + self._retry_budget_s
        token = otel_context.attach(otel_context.set_value(_SUPPRESS, True))
        try:
            return self._export(calls, deadline)
        except Exception:  # never into the SDK's worker: count and log once
            _logger.exception("otel-analytics: the tracker exporter failed unexpectedly")
            return SpanExportResult.FAILURE
        finally:
            otel_context.detach(token)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._stopping.set()  # wakes any backoff sleep: retries give up at once
        self._pool.stop()
        self._transport.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # nothing is held here between exports

    def encode_all(self, spans: Sequence[ReadableSpan | EncodedCall], *, queued: bool = False) -> list[EncodedCall]:
        """The encoded calls of ``spans`` (already encoded ones kept as they are); spans the
        tracker has no route for are skipped, malformed ones counted as failed and logged once.
        ``queued``: the calls will wait in a queue, so their payloads are copied right-sized."""
        calls = []
        for span in spans:
            if type(span) is EncodedCall:
                calls.append(span)
                continue
            try:
                call = self._encode(span, queued)  # type: ignore[arg-type]
            except Exception:
                self._count_failed(1, "unmappable", "a span could not be mapped to a tracker call")
                continue
            if call is not None:
                calls.append(call)
        return calls

    def _encode(self, span: ReadableSpan, queued: bool) -> EncodedCall | None:
        call = to_call(record_from_readable(span), send_costs=self._send_costs)
        if call is None:
            return None
        body = call.body
        if call.route == SESSION_END:
            start_time = call.extra["start_time"]
        else:
            start_time = body["timestamp"] if call.route == INTERACTION else body["start_time"]
        payload = dumps(body)
        if queued:
            payload = _compact(payload)
        return EncodedCall(call.route, payload, call.session_id, call.user_id, start_time, call.idempotency_key)

    # --- mapping and ordering -------------------------------------------------------------------
    def _export(self, spans: Sequence[ReadableSpan | EncodedCall], deadline: float) -> SpanExportResult:
        starts: list[EncodedCall] = []
        interactions: list[EncodedCall] = []
        ends: list[EncodedCall] = []
        for call in self.encode_all(spans):
            (starts if call.route == SESSION_START else ends if call.route == SESSION_END else interactions).append(
                call
            )
        # Session starts first (the deployed worker refuses an interaction of an unknown session):
        # the explicit ones, then one for each session this exporter has not started yet. They
        # are independent requests, so they go out concurrently.
        pending = {call.session_id: call for call in starts}
        for call in interactions:
            if call.session_id not in self._started and call.session_id not in pending:
                pending[call.session_id] = _implicit_start(call.session_id, call.user_id, call.start_time)
        ok = all(self._in_parallel([functools.partial(self._start_session, c, deadline) for c in pending.values()]))
        ok = self._send_interactions(interactions, deadline) and ok
        for call in ends:
            ok = self._end_session(call, deadline) and ok
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def _remember_started(self, session_id: str) -> None:
        with self._lock:
            self._started[session_id] = None
            self._started.move_to_end(session_id)
            if len(self._started) > _MAX_STARTED:
                self._started.popitem(last=False)

    def _start_session(self, call: EncodedCall, deadline: float) -> bool:
        if self._deliver(SESSION_START, call.payload, None, 1, deadline):
            self._remember_started(call.session_id)
            return True
        return False

    def _end_session(self, call: EncodedCall, deadline: float) -> bool:
        try:
            self._post(SESSION_END, call.payload, None, deadline)
        except _Final as exc:
            if exc.status != 404:
                self._count_failed(
                    1, f"end:{exc.status}", "the tracker refused a session end: %s", exc.reason, sessions=True
                )
                return False
            # Started elsewhere (or its start was lost): start it, then end it again.
            start = _implicit_start(call.session_id, call.user_id, call.start_time)
            return self._start_session(start, deadline) and self._deliver(SESSION_END, call.payload, None, 1, deadline)
        except _Retryable as exc:
            self._count_dropped(1, exc.reason, sessions=True)
            return False
        self._count_sent(1)
        return True

    def _send_interactions(self, calls: list[EncodedCall], deadline: float) -> bool:
        if not calls:
            return True
        if self._batch_supported:
            chunks = [calls[i : i + MAX_BATCH] for i in range(0, len(calls), MAX_BATCH)]
            return all(self._in_parallel([functools.partial(self._send_batch, chunk, deadline) for chunk in chunks]))
        return all(self._in_parallel([functools.partial(self._send_one, call, deadline) for call in calls]))

    def _in_parallel(self, jobs: list[Callable[[], bool]]) -> list[bool]:
        if len(jobs) == 1 or self._concurrency == 1:
            return [job() for job in jobs]
        context = otel_context.get_current()  # carries the suppression into the pool's threads

        def run(job: Callable[[], bool]) -> bool:
            token = otel_context.attach(context)
            try:
                return job()
            finally:
                otel_context.detach(token)

        results: list[Callable[[], bool]] = []
        for job in jobs:
            try:
                results.append(self._pool.submit(functools.partial(run, job)).result)
            except RuntimeError:
                # No thread for it: this exporter is stopping, or (Python 3.12+) the interpreter
                # is exiting. The job runs here, in turn: sent, or counted as dropped, never lost.
                results.append(functools.partial(run, job))
        return [result() for result in results]

    def _send_batch(self, calls: list[EncodedCall], deadline: float) -> bool:
        body = b'{"interactions":[' + b",".join([call.payload for call in calls]) + b"]}"
        try:
            self._post(INTERACTION_BATCH, body, None, deadline)
        except _Final as exc:
            if exc.status in (404, 405):
                # The deployed worker may not have the batch route: single calls from now on.
                self._batch_supported = False
                warn_once(
                    "tracker:no-batch",
                    "otel-analytics: the tracker has no batch route; sending interactions one by one.",
                )
                return all(self._send_one(call, deadline) for call in calls)
            if exc.status == 413 and len(calls) > 1:
                # Too large for this tracker's body limit: halves, until they fit.
                half = len(calls) // 2
                return all([self._send_batch(calls[:half], deadline), self._send_batch(calls[half:], deadline)])
            if exc.status == 400 and len(calls) > 1:
                # All or nothing: one bad item refuses the batch. Send singly to keep the good ones.
                return all([self._send_one(call, deadline) for call in calls])
            self._count_failed(len(calls), f"batch:{exc.status}", "the tracker refused interactions: %s", exc.reason)
            return False
        except _Retryable as exc:
            self._count_dropped(len(calls), exc.reason)
            return False
        self._count_sent(len(calls))
        return True

    def _send_one(self, call: EncodedCall, deadline: float) -> bool:
        return self._deliver(INTERACTION, call.payload, call.key, 1, deadline)

    def _deliver(self, route: str, body: bytes, key: str | None, items: int, deadline: float) -> bool:
        sessions = route in (SESSION_START, SESSION_END)
        try:
            self._post(route, body, key, deadline)
        except _Final as exc:
            self._count_failed(
                items, f"{route}:{exc.status}", "the tracker refused %s: %s", route, exc.reason, sessions=sessions
            )
            return False
        except _Retryable as exc:
            self._count_dropped(items, exc.reason, sessions=sessions)
            return False
        self._count_sent(items)
        return True

    # --- one request, with retries --------------------------------------------------------------
    def _post(self, route: str, body: bytes, key: str | None, deadline: float) -> None:
        headers = self._headers
        if key:
            headers = headers.copy()
            headers["Idempotency-Key"] = key
        attempt = 0
        while True:
            try:
                self._attempt(route, body, headers)
                self._note_success()
                return
            except _Retryable as exc:
                self._note_failure(exc.reason)
                delay = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt) * _JITTER.uniform(0.5, 1.0)
                if exc.retry_after is not None:
                    delay = exc.retry_after
                if self._stopping.is_set() or time.monotonic() + delay >= deadline:
                    raise
                attempt += 1
                with self._lock:
                    self.stats.retried += 1
                if self._stopping.wait(delay):
                    raise

    def _attempt(self, route: str, body: bytes, headers: httpx.Headers) -> None:
        if self._stopping.is_set():  # the transport is closed, or about to be: send nothing new
            raise _Retryable("the exporter is shut down")
        request = httpx.Request("POST", self._urls[route], headers=headers, content=body, extensions=self._extensions)
        try:
            response = self._transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        except httpx.TransportError as exc:
            raise _Retryable(f"{type(exc).__name__} talking to {self.url}") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status} from {self.url}{route}", _retry_after(response))
        if status >= 400:
            raise _Final(f"HTTP {status}: {response.text[:300]}", status)
        try:
            answer = loads(response.content)
        except (ValueError, RecursionError):
            answer = None
        if not isinstance(answer, dict):
            raise _Final(f"HTTP {status} with a body that is not a JSON object (is {self.url} a tracker?)", status)

    # --- accounting -----------------------------------------------------------------------------
    def _count_sent(self, items: int) -> None:
        with self._lock:
            self.stats.sent += items

    def _count_failed(self, items: int, kind: str, message: str, *args: object, sessions: bool = False) -> None:
        with self._lock:
            self.stats.failed += items
            self._count_undelivered(items, sessions, "refused by the tracker")
        warn_once(
            f"tracker:failed:{kind}",
            "otel-analytics: " + message + " (logged once; see handle.stats())",
            *args,
        )

    def _count_dropped(self, items: int, reason: str, *, sessions: bool = False) -> None:
        with self._lock:
            self.stats.dropped += items
            self._count_undelivered(items, sessions, reason)
        warn_once(
            f"tracker:dropped:{reason.split(' ')[0]}",
            "otel-analytics: dropping analytics after retries: %s "
            "(logged once; see handle.stats()). Is the tracker running? `otel-analytics tracker serve` "
            "starts a local one.",
            reason,
        )

    def _count_undelivered(self, items: int, sessions: bool, reason: str) -> None:
        """Under the lock."""
        if sessions:
            self.stats.undelivered_sessions += items
        else:
            self.stats.undelivered_interactions += items
        self.stats.last_problem = reason

    def count_not_sent(self, calls: Sequence[EncodedCall], reason: str) -> None:
        """Calls given up without being sent (still waiting when the exporter stopped)."""
        sessions = sum(1 for call in calls if call.route in (SESSION_START, SESSION_END))
        with self._lock:
            self.stats.dropped += len(calls)
            self._count_undelivered(sessions, True, reason)
            self._count_undelivered(len(calls) - sessions, False, reason)

    # --- telling of loss --------------------------------------------------------------------------
    def _note_failure(self, reason: str) -> None:
        """A request failed in a way worth retrying: say so, with numbers, once the tracker has
        been unreachable (or refusing) for a while, and again every few minutes while it lasts."""
        now = time.monotonic()
        with self._lock:
            if self._failing_since is None:
                self._failing_since = now
            since = self._failing_since
            due = now - since >= self.unreachable_warning_s and now - self._warned_at >= UNREACHABLE_REPEAT_S
            if due:
                self._warned_at = now
        if due:
            stats = self.stats
            _logger.warning(
                "otel-analytics: the tracker at %s has not answered for %.0f s (%s); %d interactions and "
                "session events are waiting, %d dropped so far. Is it running? (`otel-analytics tracker serve` "
                "starts a local one.)",
                self.url,
                now - since,
                reason,
                stats.waiting,
                stats.dropped,
            )

    def _note_success(self) -> None:
        if self._failing_since is None:
            return
        with self._lock:
            since, self._failing_since = self._failing_since, None
            warned = self._warned_at >= since
            self._warned_at = -math.inf
        if since is not None and warned:
            _logger.warning(
                "otel-analytics: the tracker at %s answers again, after %.0f s.", self.url, time.monotonic() - since
            )

    def report_undelivered(self, when: str) -> bool:
        """Log what could not be delivered, with numbers and why; ``True`` when there was some."""
        stats = self.stats
        lost_interactions, lost_sessions, waiting = (
            stats.undelivered_interactions,
            stats.undelivered_sessions,
            stats.waiting,
        )
        if not (lost_interactions or lost_sessions or waiting):
            return False
        _logger.warning(
            "otel-analytics %s: %d interactions and %d session starts/ends could not be delivered to the "
            "tracker at %s (%s)%s.",
            when,
            lost_interactions,
            lost_sessions,
            self.url,
            stats.last_problem or "not sent in time",
            f"; {waiting} more were still queued, or dropped by a full span queue" if waiting else "",
        )
        return True
