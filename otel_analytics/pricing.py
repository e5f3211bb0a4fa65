"""Cost estimates: prices looked up once per (provider, model), then only multiplied.

Prices come from the ``genai-prices`` package's bundled snapshot (no network, ever) and from an
optional user file (``ANALYTICS_PRICING_FILE``) for custom or self-hosted models, which wins over
the snapshot. Money follows the tracker contract: integer micro-cents (1 mc = $0.00001), each
token kind priced as ``round(tokens * usd_per_million * 0.1)``. An unknown model gets no cost, a
flag on the span and one warning per model: never a guess.

Override file (TOML or JSON), prices in USD per million tokens::

    version = "our-prices-2026-11"          # optional, recorded on spans
    [models."llama-3-70b-internal"]
    provider = "self-hosted"                # optional
    input = 0.2
    output = 0.6
    cache_read = 0.05                       # optional, defaults to input
    cache_write = 0.25                      # optional, defaults to input
"""

from __future__ import annotations

import json
import logging
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from .errors import ConfigurationError
from .usage import Usage

_logger = logging.getLogger(__name__)

# genai-prices provider ids -> gen_ai.provider.name well-known values.
_PROVIDER_TO_SEMCONV = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "gcp.gemini",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "x-ai": "x_ai",
    "cohere": "cohere",
    "aws": "aws.bedrock",
    "azure": "azure.ai.openai",
    "perplexity": "perplexity",
    "moonshotai": "moonshot_ai",
}
_SEMCONV_TO_PROVIDER = {v: k for k, v in _PROVIDER_TO_SEMCONV.items()}

# Cheap prefix rules so the provider is known when a span starts, without a price lookup.
_MODEL_PREFIXES = (
    (
        ("gpt-", "chatgpt", "o1", "o3", "o4", "text-embedding", "davinci", "babbage", "whisper", "dall-e"),
        "openai",
    ),
    (("claude",), "anthropic"),
    (("gemini", "gemma"), "gcp.gemini"),
    (("mistral", "mixtral", "codestral", "ministral", "magistral", "pixtral"), "mistral_ai"),
    (("command",), "cohere"),
    (("deepseek",), "deepseek"),
    (("grok",), "x_ai"),
)

_MAX_WARNED = 1024


def infer_provider(model: str | None) -> str | None:
    """The ``gen_ai.provider.name`` a model name implies, when it does."""
    if not model:
        return None
    name = model.lower().rsplit("/", 1)[-1]
    for prefixes, provider in _MODEL_PREFIXES:
        if name.startswith(prefixes):
            return provider
    return None


@dataclass(frozen=True, slots=True)
class Price:
    """One model's prices in USD per million tokens."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    version: str = ""
    """Where the price comes from: ``genai-prices <version>`` or the override file's version."""
    provider: str | None = None
    # Set when the snapshot has tiered or other non-linear prices: then genai-prices computes.
    model_price: Any = None


class Cost(NamedTuple):
    """A cost estimate (a tuple: one is built per priced interaction)."""

    usd: float
    micro_cents: int
    version: str


def micro_cents(tokens: int, usd_per_million: float) -> int:
    """The contract's rule: ``round(tokens * usd_per_million * 0.1)`` micro-cents."""
    return round(tokens * usd_per_million * 0.1)


def format_usd(mc: int) -> str:
    """``$D.DDDD`` from micro-cents, rounded half-even as the tracker contract says."""
    dollars = (Decimal(mc) / Decimal(100000)).quantize(Decimal("0.0001"))
    return f"${dollars}"


def cost_value(mc: int) -> dict[str, Any]:
    """The contract's ``CostValue``."""
    return {"micro_cents": mc, "display": format_usd(mc), "currency": "USD"}


def cost_of(usage: Usage, price: Price) -> Cost | None:
    """The cost of ``usage`` at ``price``; ``None`` when no token count is known."""
    input_tokens, output = usage.input_tokens, usage.output_tokens
    if input_tokens is None and output is None:
        return None
    if price.model_price is not None:
        return _tiered_cost(usage, price)
    cache_read = usage.cache_read_tokens or 0
    cache_write = usage.cache_write_tokens or 0
    fresh_input = (input_tokens or 0) - cache_read - cache_write
    # micro_cents() per kind of token, written out (this runs for every interaction); a kind
    # with no tokens adds nothing, as round(0 * price) would.
    mc = round(fresh_input * price.input * 0.1) if fresh_input > 0 else 0
    if cache_read:
        mc += round(cache_read * (price.input if price.cache_read is None else price.cache_read) * 0.1)
    if cache_write:
        mc += round(cache_write * (price.input if price.cache_write is None else price.cache_write) * 0.1)
    if output:
        mc += round(output * price.output * 0.1)
    return Cost(mc / 100000, mc, price.version)


def _tiered_cost(usage: Usage, price: Price) -> Cost:
    import genai_prices

    result = price.model_price.calc_price(
        genai_prices.Usage(
            input_tokens=usage.input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
            cache_read_tokens=usage.cache_read_tokens or 0,
            cache_write_tokens=usage.cache_write_tokens or 0,
        )
    )
    mc = int((Decimal(result["total_price"]) * 100000).to_integral_value())
    return Cost(usd=mc / 100000, micro_cents=mc, version=price.version)


class NewNameBudget(NamedTuple):
    """How many price lookups of names not seen before a :class:`PriceBook` may make.

    A lookup of a name the snapshot does not know walks the whole table (~100-300 µs here), and
    on the request path the name comes from the client: a client sending a new name each time
    would pay that on every request. Past the budget a new name is answered "not looked up"
    (not cached, so it is priced once the budget refills); known names are never limited. The
    request path's budget is ``ANALYTICS_NEW_MODELS_PER_S`` (:meth:`per_second_of`): its default,
    20 a second and 200 at once, lets a gateway's few hundred models in within seconds, and holds
    a client inventing names to ~0.5 % of a core.
    """

    burst: int
    per_second: float

    @classmethod
    def per_second_of(cls, rate: float | None) -> NewNameBudget | None:
        """A budget of ``rate`` names a second and ten seconds' worth at once (``None``: no limit)."""
        return None if rate is None else cls(max(1, round(rate * 10)), rate)


class PriceBook:
    """Finds a model's price once and remembers it (and remembers misses).

    ``budget``: a limit on lookups of new names (the request path's book has one; the tracker's,
    which must price everything it stores, has none). ``clock``: seconds, for the budget.
    """

    def __init__(
        self,
        override_file: str | None = None,
        *,
        budget: NewNameBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._overrides, self._override_version = load_overrides(override_file) if override_file else ({}, "")
        self._cache: dict[tuple[str | None, str], Price | None] = {}
        self._providers: dict[str, str | None] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._budget = budget
        self._clock = clock
        self._tokens = float(budget.burst) if budget is not None else 0.0
        self._tokens_at = clock()

    @property
    def override_version(self) -> str:
        """The price file's ``version`` (what its prices are recorded as); empty without one."""
        return self._override_version

    def price(self, model: str, provider: str | None = None) -> Price | None:
        """The price of ``model``; ``None`` when none is known, or (see :meth:`looked_up`) when
        the budget for new names is spent."""
        key = (provider, model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        price = self._overrides.get(model.lower())
        if price is not None and provider and price.provider and price.provider != provider:
            price = None  # an override for the same name at another provider
        if price is None:
            if not self._may_look_up():
                return None  # not cached: priced when the budget allows
            price = _snapshot_price(model, provider)
        with self._lock:
            if len(self._cache) > 4096:  # bounded: model names can come from untrusted input
                self._cache.clear()
            self._cache[key] = price
            if price is None and model not in self._warned and len(self._warned) < _MAX_WARNED:
                self._warned.add(model)
                _logger.warning("otel-analytics: no price known for model %r; its interactions get no cost.", model)
        return price

    def looked_up(self, model: str, provider: str | None = None) -> bool:
        """Whether ``price(model, provider)`` answered from a lookup (``None``: no price known),
        not from a spent budget."""
        return (provider, model) in self._cache

    def _may_look_up(self) -> bool:
        budget = self._budget
        if budget is None:
            return True
        with self._lock:
            now = self._clock()
            self._tokens = min(float(budget.burst), self._tokens + (now - self._tokens_at) * budget.per_second)
            self._tokens_at = now
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True

    def provider(self, model: str | None) -> str | None:
        """The provider a model name implies, from prefixes first, then the price table."""
        if not model:
            return None
        try:
            return self._providers[model]
        except KeyError:
            pass
        provider = infer_provider(model)
        if provider is None:
            price = self.price(model)
            if price is None and not self.looked_up(model):
                return None  # the budget is spent: not remembered, found once it refills
            provider = price.provider if price is not None else None
        if len(self._providers) > 4096:
            self._providers.clear()
        self._providers[model] = provider
        return provider

    def warm(self) -> None:
        """Load the price snapshot ahead of the first request (it takes a few hundred ms)."""
        self.price("gpt-4o", "openai")


def _snapshot_price(model: str, provider: str | None) -> Price | None:
    import genai_prices

    try:
        calc = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=0, output_tokens=0),
            model,
            provider_id=_SEMCONV_TO_PROVIDER.get(provider or "", provider),
            genai_request_timestamp=datetime.now(tz=UTC),
        )
    except LookupError:
        if provider is None:
            return None
        return _snapshot_price(model, None)  # the caller's provider may be a custom name
    except Exception:  # a malformed name must never break the app
        _logger.debug("genai-prices failed for %r", model, exc_info=True)
        return None
    model_price = calc.model_price
    raw = {
        name: getattr(model_price, name, None)
        for name in ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
    }
    linear = all(value is None or isinstance(value, Decimal) for value in raw.values())
    flat = {name: None if value is None else float(getattr(value, "base", value)) for name, value in raw.items()}
    return Price(
        # For tiered prices these are the base tier's, for display: genai-prices does the sums.
        input=flat["input_mtok"] or 0.0,
        output=flat["output_mtok"] or 0.0,
        cache_read=flat["cache_read_mtok"],
        cache_write=flat["cache_write_mtok"],
        version=f"genai-prices {genai_prices.__version__}",
        provider=_PROVIDER_TO_SEMCONV.get(calc.provider.id, calc.provider.id),
        model_price=None if linear else model_price,
    )


def load_overrides(path: str) -> tuple[dict[str, Price], str]:
    """Read a price override file; any problem is a ``ConfigurationError`` naming the file."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        data = json.loads(raw) if path.lower().endswith(".json") else tomllib.loads(raw.decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"ANALYTICS_PRICING_FILE={path!r} cannot be read: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ConfigurationError(f"ANALYTICS_PRICING_FILE={path!r} needs a 'models' table of model name -> prices.")
    version = str(data.get("version") or f"override {path}")
    prices: dict[str, Price] = {}
    for model, entry in data["models"].items():
        if not isinstance(entry, dict):
            raise ConfigurationError(f"ANALYTICS_PRICING_FILE {path!r}: models.{model} must be a table.")
        values: dict[str, float | None] = {}
        for key in ("input", "output", "cache_read", "cache_write"):
            value = entry.get(key)
            required = key in ("input", "output")
            if value is None and not required:
                values[key] = None
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != value:
                raise ConfigurationError(
                    f"ANALYTICS_PRICING_FILE {path!r}: models.{model}.{key}={value!r}; "
                    "accepted values: a non-negative number (USD per million tokens)."
                )
            values[key] = float(value)
        provider = entry.get("provider")
        prices[str(model).lower()] = Price(
            input=values["input"] or 0.0,
            output=values["output"] or 0.0,
            cache_read=values["cache_read"],
            cache_write=values["cache_write"],
            version=version,
            provider=str(provider) if provider else None,
        )
    return prices, version
