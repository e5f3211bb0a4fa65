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
half of what recording the interaction as a span costs. So an interaction appends one tuple to a
queue (~1 µs), and the SDK gets its measurements when a reader collects (the callback of
``analytics.interactions``, which every collection runs before reading the instruments), or on the
recording thread once :data:`MAX_WAITING` wait, so memory stays bounded. Nothing is lost or
counted twice; what is lost is what the SDK would attach to a measurement from its context at the
moment it is made (exemplars).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, MeterProvider, Observation

from . import attributes as attrs
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
MAX_WAITING = 4096
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
_COST_PART_KEYS = tuple(attrs.COST_PART_PREFIX + part for part in attrs.COST_PARTS)


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
        self._waiting: deque[tuple[Any, ...]] = deque()
        self._drain_lock = threading.Lock()
        self._attribute_sets: dict[tuple[Any, ...], dict[str, Any]] = {}
        if histograms is not None:
            histograms.attributes_of = self._attributes

    # --- the request path -----------------------------------------------------------------------
    def record(
        self,
        interaction_type: str,
        attributes: Mapping[str, Any],
        duration_s: float,
        user_id: str | None,
        chunk_ends_ns: Sequence[int] | None = None,
    ) -> None:
        """An interaction that ended, described by its span's attributes (which hold everything
        the metrics need: they are read here, not recomputed). ``chunk_ends_ns``: when each chunk
        of its stream ended (monotonic ns), for the time per output chunk."""
        get = attributes.get
        user = user_id if self.with_user_id else None
        cost = get(_COST_USD)
        status: Any = get(_PRICING_STATUS) or ("priced" if cost is not None else None)
        if interaction_type != "chat" or _COST_PART_KEYS[0] in attributes:
            given = 0
            for key in _COST_PART_KEYS:  # the caller's own costs (micro-cents): what the tracker counts
                value = get(key)
                if value is not None:
                    given += value
                    status = "given"
            if status == "given":
                cost = given / 100_000
        outcome = get(_OUTCOME) or "completed"
        if outcome == "completed" and get(_ERROR_TYPE) is not None:  # an error answer (a 429, say)
            outcome = "failed"
        if interaction_type != "chat":
            self._waiting.append((interaction_type, outcome, user, cost, status))
        else:
            self._waiting.append(
                (
                    "chat",
                    outcome,
                    user,
                    cost,
                    status,
                    get(_OPERATION) or "chat",
                    get(_PROVIDER) or "unknown",
                    get(_REQUEST_MODEL),
                    get(_RESPONSE_MODEL),
                    get(_SERVER),
                    get(_ERROR_TYPE),
                    get(_INPUT_TOKENS),
                    get(_OUTPUT_TOKENS),
                    duration_s,
                    get(_FIRST_CHUNK),
                    chunk_ends_ns,
                )
            )
        if len(self._waiting) > MAX_WAITING:
            self.hand_on()

    # --- collection -----------------------------------------------------------------------------
    def _collect(self, options: CallbackOptions) -> Iterable[Observation]:
        self.hand_on()
        return [Observation(total, self._attributes(key)) for key, total in list(self._interaction_totals.items())]

    def hand_on(self) -> None:
        """Give the waiting interactions' measurements to the histograms and the SDK's counters
        (one thread at a time: the interaction totals are summed here)."""
        with self._drain_lock:
            waiting = self._waiting
            costs: dict[tuple[Any, ...], float] = {}
            totals = self._interaction_totals
            measured: list[tuple[int, tuple[Any, ...], float]] = []
            gaps: list[tuple[tuple[Any, ...], Sequence[int]]] = []  # a stream's chunk ends, by series
            add = measured.append
            while True:
                try:
                    item = waiting.popleft()
                except IndexError:
                    break
                kind, outcome, user, cost, status = item[:5]
                if kind != "chat":
                    key: tuple[Any, ...] = ("interactions", kind, outcome, None, None, user)
                    totals[key] = totals.get(key, 0) + 1
                    if cost is not None:
                        cost_key = ("cost", kind, None, None, None, status, user)
                        costs[cost_key] = costs.get(cost_key, 0.0) + cost
                    continue
                (operation, provider, request_model, response_model, server, error_type) = item[5:11]
                (input_tokens, output_tokens, duration_s, first_chunk_s, chunk_ends) = item[11:]
                key = ("interactions", "chat", outcome, provider, request_model or response_model, user)
                totals[key] = totals.get(key, 0) + 1
                cost_key = ("cost", "chat", provider, request_model, response_model, status or "no_usage", user)
                costs[cost_key] = costs.get(cost_key, 0.0) + (cost or 0.0)
                base = ("genai", operation, provider, request_model, response_model, server, user)
                if input_tokens is not None:
                    add((_TOKENS, (*base, "input"), input_tokens))
                if output_tokens is not None:
                    add((_TOKENS, (*base, "output"), output_tokens))
                add((_DURATION, (*base, error_type) if error_type else base, duration_s))
                if first_chunk_s is not None:
                    add((_FIRST, base, first_chunk_s))
                    if chunk_ends and len(chunk_ends) > 1:
                        gaps.append((base, chunk_ends))
            if self._own is not None:
                self._own.record_many(measured)
                for key, ends in gaps:
                    self._own.record_gaps(_PER_CHUNK, key, ends)
            else:
                instruments, attributes = self._instruments, self._attributes
                for index, key, value in measured:
                    instruments[index].record(value, attributes(key))
                per_chunk = instruments[_PER_CHUNK]
                for key, ends in gaps:
                    chunk_attributes = attributes(key)
                    for previous, end in itertools.pairwise(ends):
                        per_chunk.record(max(end - previous, 0) / 1e9, chunk_attributes)
            for cost_key, usd in costs.items():
                self._cost.add(usd, self._attributes(cost_key))

    def _attributes(self, key: tuple[Any, ...]) -> dict[str, Any]:
        """The attributes of a key, made once (the SDK copies what it keeps)."""
        found = self._attribute_sets.get(key)
        if found is None:
            found = _attributes_of(key)
            if len(self._attribute_sets) >= _MAX_ATTRIBUTE_SETS:
                self._attribute_sets.clear()
            self._attribute_sets[key] = found
        return found


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
