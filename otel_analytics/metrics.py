"""GenAI metrics of every interaction, whatever records it (the middleware, a captured call, a
decorator, ``track_*``), and whether its trace is sampled or not.

The GenAI client metrics of the semantic conventions, with their names, units, instruments and
bucket boundaries (those util-genai uses): ``gen_ai.client.token.usage`` (``gen_ai.token.type``
input/output), ``gen_ai.client.operation.duration`` (``error.type`` on failures) and, for
streams, ``gen_ai.client.operation.time_to_first_chunk`` and ``...time_per_output_chunk`` (one
value per chunk after the first); attributes ``gen_ai.operation.name``, ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.response.model``, ``server.address``. Our own: ``analytics.cost``
(USD, monotonic, by interaction type, provider, model and pricing status) and
``analytics.interactions`` (by type and outcome, and provider and model for chats). No session or
user id, nor any response id, is ever an attribute: ``user.id`` only with
``ANALYTICS_METRICS_USER_ID=true``, for deployments that know their number of users.

Why measurements wait: one measurement through the SDK's instruments costs ~8 µs on this kind of
machine (it cleans and hashes the attributes each time) and a chat makes five or more, more than
half of what recording the interaction as a span costs. So an interaction appends one tuple (its
span's attributes, its duration) to a queue (~0.5 µs), and the SDK gets its measurements when a
reader collects (the callback of ``analytics.interactions``, which every collection runs before
reading the instruments), or on the recording thread once :data:`MAX_WAITING` wait, so memory
stays bounded (a few MB at most). The waiting interactions are then read and grouped by series,
and each series' values are aggregated together. Nothing is lost or counted twice; what is lost
is what the SDK would attach to a measurement from its context at the moment it is made
(exemplars).
"""

from __future__ import annotations

import operator
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Any

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, MeterProvider, Observation

from . import attributes as attrs
from ._guard import report_internal_error
from ._version import __version__
from .metrics_export import Histograms, HistogramSpec

TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
"""``gen_ai.client.token.usage``'s explicit bucket boundaries (semantic conventions)."""
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
"""Seconds: the duration's boundaries (semantic conventions), also the chunk timings' (util-genai)."""
SPECS = (
    HistogramSpec("gen_ai.client.token.usage", "{token}", "Number of input and output tokens used.", TOKEN_BUCKETS),
    HistogramSpec("gen_ai.client.operation.duration", "s", "GenAI operation duration.", DURATION_BUCKETS),
    HistogramSpec(
        "gen_ai.client.operation.time_to_first_chunk",
        "s",
        "Time from the request to the first chunk of a streamed answer.",
        DURATION_BUCKETS,
    ),
    HistogramSpec(
        "gen_ai.client.operation.time_per_output_chunk",
        "s",
        "Time per output chunk after the first: from the end of the previous chunk to this one's.",
        DURATION_BUCKETS,
    ),
)
"""The four GenAI histograms, in the order the recorder numbers them."""
_TOKENS, _DURATION, _FIRST, _PER_CHUNK = range(4)
MAX_WAITING = 2048
"""Interactions waiting for a collection before the recording thread hands them on itself."""
_MAX_ATTRIBUTE_SETS = 4096
USER_ID = attrs.USER_ID
TOKEN_TYPE = "gen_ai.token.type"
# The span attributes read (names bound once: this runs for every interaction).
_OPERATION, _PROVIDER = attrs.GEN_AI_OPERATION_NAME, attrs.GEN_AI_PROVIDER_NAME
_REQUEST_MODEL, _RESPONSE_MODEL = attrs.GEN_AI_REQUEST_MODEL, attrs.GEN_AI_RESPONSE_MODEL
_SERVER, _ERROR_TYPE, _OUTCOME = attrs.SERVER_ADDRESS, attrs.ERROR_TYPE, attrs.OUTCOME
_INPUT_TOKENS, _OUTPUT_TOKENS = attrs.GEN_AI_USAGE_INPUT_TOKENS, attrs.GEN_AI_USAGE_OUTPUT_TOKENS
_FIRST_CHUNK = attrs.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
_COST_USD, _PRICING_STATUS = attrs.COST_USD, attrs.PRICING_STATUS


class GenAIMetrics:
    """The instruments, and the interactions waiting for the next collection."""

    def __init__(self, meter: Meter, *, with_user_id: bool = False, histograms: Histograms | None = None) -> None:
        """``histograms``: aggregate the histograms there (readers otel-analytics built add them
        to their exports), not through the SDK's instruments."""
        self.with_user_id = with_user_id
        self._own = histograms
        self._instruments: tuple[Histogram, ...] = ()
        if histograms is None:
            self._instruments = tuple(
                meter.create_histogram(
                    spec.name,
                    unit=spec.unit,
                    description=spec.description,
                    explicit_bucket_boundaries_advisory=list(spec.bounds),
                )
                for spec in SPECS
            )
        self._cost = meter.create_counter(
            "analytics.cost", unit="USD", description="Estimated cost of the interactions, in US dollars."
        )
        # Cumulative, kept here (one small total per attribute set), reported when a reader
        # collects: its callback hands the waiting measurements on first.
        self._interaction_totals: dict[tuple[Any, ...], int] = {}
        meter.create_observable_counter(
            "analytics.interactions",
            callbacks=[self._collect],
            unit="{interaction}",
            description="Interactions recorded, by type and outcome.",
        )
        self.waiting: deque[tuple[Any, ...]] = deque()
        """The interactions waiting for the next hand-on, each ``(type, user id or None, span
        attributes, duration in s, chunk ends or None)``: :meth:`record` appends to it, and so does
        ``emit_interaction`` itself (the path of every interaction that is over when recorded),
        where one more call would cost a twentieth of what the metrics add; then, past
        :data:`MAX_WAITING`, :meth:`hand_on_when_full`."""
        self._drain_lock = threading.Lock()
        self._attribute_sets: dict[tuple[Any, ...], dict[str, Any]] = {}
        if histograms is not None:
            histograms.attributes_of = self._attributes

    # --- the request path -----------------------------------------------------------------------
    def record(
        self,
        interaction_type: str,
        attributes: dict[str, Any],
        duration_s: float,
        user_id: str | None,
        chunk_ends_ns: Sequence[int] | None = None,
    ) -> None:
        """An interaction that ended, described by its span's attributes (which hold everything
        the metrics need: they are read when the measurements are handed on, not here; the caller
        never changes them after). ``chunk_ends_ns``: when each chunk of its stream ended
        (monotonic ns), for the time per output chunk; a list (maybe empty) for every streamed
        answer, ``None`` for any other interaction, whose time to first chunk is not read. Never
        raises: this runs in the app's calls."""
        waiting = self.waiting
        waiting.append(
            (interaction_type, user_id if self.with_user_id else None, attributes, duration_s, chunk_ends_ns)
        )
        if len(waiting) > MAX_WAITING:
            self.hand_on_when_full()

    def hand_on_when_full(self) -> None:
        """:meth:`hand_on` on the recording thread, so that memory stays bounded; never raises
        (this runs in the app's calls)."""
        try:
            self.hand_on()
        except Exception as error:  # never the app's problem
            report_internal_error("metrics", error)

    # --- collection -----------------------------------------------------------------------------
    def _collect(self, options: CallbackOptions) -> Iterable[Observation]:
        self.hand_on()
        return [Observation(total, self._attributes(key)) for key, total in list(self._interaction_totals.items())]

    def hand_on(self) -> None:
        """Give the waiting interactions' measurements to the histograms and the SDK's counters
        (one thread at a time: the interaction totals are summed here).

        The interactions are grouped by what their series share (type, user, operation,
        provider, models, server, error, outcome, pricing status): each one costs a dozen reads
        of its attributes and two tuples; each group's keys and attributes are made once, its
        costs summed once, and the times between chunks of all its streams bucketed at once."""
        with self._drain_lock:
            waiting = self.waiting
            groups: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
            # As many as are waiting now (what comes in meanwhile waits for the next hand-on),
            # each taken off in C.
            for kind, user, attributes, duration_s, chunk_ends in map(deque.popleft, repeat(waiting, len(waiting))):
                get = attributes.get
                series = (
                    kind,
                    user,
                    get(_OPERATION),
                    get(_PROVIDER),
                    get(_REQUEST_MODEL),
                    get(_RESPONSE_MODEL),
                    get(_SERVER),
                    get(_ERROR_TYPE),
                    get(_OUTCOME),
                    get(_PRICING_STATUS),
                )
                rows = groups.get(series)
                if rows is None:
                    rows = groups[series] = []
                rows.append(  # a row: what _fold reads of each interaction
                    (
                        duration_s,
                        chunk_ends,
                        get(_INPUT_TOKENS),
                        get(_OUTPUT_TOKENS),
                        get(_COST_USD),
                        get(_FIRST_CHUNK) if chunk_ends is not None else None,
                    )
                )
            costs: dict[tuple[Any, ...], float] = {}
            measured: list[tuple[int, tuple[Any, ...], Sequence[Any]]] = []
            gaps: list[tuple[tuple[Any, ...], list[int]]] = []  # the times between chunks (ns), by series
            for series, rows in groups.items():
                self._fold(series, rows, costs, measured, gaps)
            if self._own is not None:
                self._own.record_many(measured)
                for key, between in gaps:
                    self._own.record_gaps(_PER_CHUNK, key, between)
            else:
                instruments, attributes_of = self._instruments, self._attributes
                for index, key, values in measured:
                    record, found = instruments[index].record, attributes_of(key)
                    for value in values:
                        record(value, found)
                per_chunk = instruments[_PER_CHUNK]
                for key, between in gaps:
                    chunk_attributes = attributes_of(key)
                    for gap in between:
                        per_chunk.record(max(gap, 0) / 1e9, chunk_attributes)
            for cost_key, usd in costs.items():
                self._cost.add(usd, self._attributes(cost_key))

    def _fold(
        self,
        series: tuple[Any, ...],
        rows: list[tuple[Any, ...]],
        costs: dict[tuple[Any, ...], float],
        measured: list[tuple[int, tuple[Any, ...], Sequence[Any]]],
        gaps: list[tuple[tuple[Any, ...], list[int]]],
    ) -> None:
        """One group's counts, costs and histogram values."""
        kind, user, operation, provider, request_model, response_model, server, error_type, outcome, status = series
        outcome = outcome or "completed"
        if outcome == "completed" and error_type is not None:  # an error answer (a 429, say)
            outcome = "failed"
        chat = kind == "chat"
        key: tuple[Any, ...] = (
            ("interactions", "chat", outcome, provider or "unknown", request_model or response_model, user)
            if chat
            else ("interactions", kind, outcome, None, None, user)
        )
        totals = self._interaction_totals
        totals[key] = totals.get(key, 0) + len(rows)
        durations, chunk_ends, input_tokens, output_tokens, row_costs, first_chunks = zip(*rows, strict=True)
        # Summed per series: the pricing status is the series' own (the table's verdict, or
        # "given": the caller's own cost), else "priced" where there is a cost, and a chat's
        # "no_usage" where there is none (counted 0, so its series shows).
        priced = _present(row_costs)
        if status is not None:
            if priced or chat:
                _add(costs, _cost_key(series, status), sum(priced))
        else:
            if priced:
                _add(costs, _cost_key(series, "priced"), sum(priced))
            if chat and len(priced) < len(rows):
                _add(costs, _cost_key(series, None), 0.0)
        if not chat:
            return
        base = ("genai", operation or "chat", provider or "unknown", request_model, response_model, server, user)
        found = _present(input_tokens)
        if found:
            measured.append((_TOKENS, (*base, "input"), found))
        found = _present(output_tokens)
        if found:
            measured.append((_TOKENS, (*base, "output"), found))
        measured.append((_DURATION, (*base, error_type) if error_type else base, durations))
        found = _present(first_chunks)
        if found:
            measured.append((_FIRST, base, found))
            # The times between a stream's chunks, every stream of the series in one list (ns).
            between: list[int] = []
            for first, ends in zip(first_chunks, chunk_ends, strict=True):
                if first is not None and ends and len(ends) > 1:
                    between += map(operator.sub, ends[1:], ends)
            if between:
                gaps.append((base, between))

    def _attributes(self, key: tuple[Any, ...]) -> dict[str, Any]:
        """The attributes of a key, made once (the SDK copies what it keeps)."""
        found = self._attribute_sets.get(key)
        if found is None:
            found = _attributes_of(key)
            if len(self._attribute_sets) >= _MAX_ATTRIBUTE_SETS:
                self._attribute_sets.clear()
            self._attribute_sets[key] = found
        return found


def _present(values: Sequence[Any]) -> Sequence[Any]:
    """``values`` but the ``None`` ones (counted in C first: usually there are none, or all are)."""
    absent = values.count(None)
    if absent == 0:
        return values
    if absent == len(values):
        return ()
    return [value for value in values if value is not None]


def _add(costs: dict[tuple[Any, ...], float], key: tuple[Any, ...], usd: float) -> None:
    costs[key] = costs.get(key, 0.0) + usd


def _cost_key(series: tuple[Any, ...], status: str | None) -> tuple[Any, ...]:
    """The ``analytics.cost`` series of a series' interactions priced with ``status`` (a chat's
    by provider and models, ``no_usage`` when it has none; another kind's by kind alone)."""
    kind, user, _, provider, request_model, response_model = series[:6]
    if kind == "chat":
        return ("cost", "chat", provider or "unknown", request_model, response_model, status or "no_usage", user)
    return ("cost", kind, None, None, None, status, user)


def _attributes_of(key: tuple[Any, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    name = key[0]
    if name == "genai":
        _, operation, provider, request_model, response_model, server, user = key[:7]
        out[_OPERATION] = operation
        out[_PROVIDER] = provider
        if request_model:
            out[_REQUEST_MODEL] = request_model
        if response_model:
            out[_RESPONSE_MODEL] = response_model
        if server:
            out[_SERVER] = server
        if len(key) > 7:  # the token type, or the error type of a failed call's duration
            out[TOKEN_TYPE if key[7] in ("input", "output") else _ERROR_TYPE] = key[7]
    elif name == "interactions":
        _, kind, outcome, provider, model, user = key
        out[attrs.INTERACTION_TYPE] = kind
        out[_OUTCOME] = outcome
        if provider:
            out[_PROVIDER] = provider
        if model:
            out[_REQUEST_MODEL] = model
    else:  # cost
        _, kind, provider, request_model, response_model, status, user = key
        out[attrs.INTERACTION_TYPE] = kind
        if provider:
            out[_PROVIDER] = provider
        if request_model:
            out[_REQUEST_MODEL] = request_model
        if response_model:
            out[_RESPONSE_MODEL] = response_model
        if status:
            out[_PRICING_STATUS] = status
    if user:
        out[USER_ID] = user
    return out


_lock = threading.Lock()
_made: dict[tuple[int, bool], tuple[MeterProvider, GenAIMetrics]] = {}


def metrics_for(provider: MeterProvider, *, with_user_id: bool, histograms: Histograms | None = None) -> GenAIMetrics:
    """The metrics of a meter provider, made once per provider (a second set of instruments on
    the same meter would count the interactions twice)."""
    key = (id(provider), with_user_id)
    with _lock:
        found = _made.get(key)
        if found is not None and found[0] is provider:
            return found[1]
        meter = provider.get_meter("otel_analytics", __version__)
        made = GenAIMetrics(meter, with_user_id=with_user_id, histograms=histograms)
        _made[key] = (provider, made)
        return made
