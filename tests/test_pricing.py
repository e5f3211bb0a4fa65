from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import genai_prices
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider

import otel_analytics as oa
from otel_analytics.errors import ConfigurationError
from otel_analytics.exporters.tracker import TrackerSpanExporter
from otel_analytics.pricing import NewNameBudget, Price, PriceBook, cost_of, format_usd, infer_provider, micro_cents
from otel_analytics.runtime import Runtime
from otel_analytics.settings import Settings
from otel_analytics.testing import CaptureAnalytics
from otel_analytics.usage import Usage
from tests.conftest import LocalTracker


def test_contract_test_vectors() -> None:
    assert micro_cents(1_000_000, 3.0) == 300_000
    assert format_usd(300_000) == "$3.0000"
    assert format_usd(4500 + 8400) == "$0.1290"
    assert format_usd(5) == "$0.0000"  # half-even at 4 decimals: $0.00005 -> $0.0000
    assert format_usd(15) == "$0.0002"  # $0.00015 -> $0.0002


def test_known_model_cost_to_the_micro_cent() -> None:
    book = PriceBook()
    price = book.price("gpt-4o-mini", "openai")
    assert price is not None
    assert (price.input, price.output, price.cache_read) == (0.15, 0.6, 0.075)
    cost = cost_of(Usage(input_tokens=12_345, output_tokens=678, cache_read_tokens=2_000), price)
    assert cost is not None
    # (12345 - 2000) * 0.15 * 0.1 + 2000 * 0.075 * 0.1 + 678 * 0.6 * 0.1 = 155.175 + 15 + 40.68
    assert cost.micro_cents == 155 + 15 + 41
    assert cost.version.startswith("genai-prices ")


counts = st.none() | st.integers(min_value=0, max_value=10**9)
prices = st.floats(min_value=0, max_value=1000, allow_nan=False)


@settings(deadline=None)  # timing is not the point: a loaded CI machine must not fail it
@given(counts, counts, counts, counts, prices, prices, st.none() | prices, st.none() | prices)
def test_a_cost_is_the_contract_rule_summed_over_the_kinds_of_token(
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read: int | None,
    cache_write: int | None,
    input_price: float,
    output_price: float,
    cache_read_price: float | None,
    cache_write_price: float | None,
) -> None:
    price = Price(input_price, output_price, cache_read_price, cache_write_price, version="v")
    usage = Usage(input_tokens, output_tokens, cache_read, cache_write)
    cost = cost_of(usage, price)
    if input_tokens is None and output_tokens is None:
        assert cost is None
        return
    fresh = max((input_tokens or 0) - (cache_read or 0) - (cache_write or 0), 0)
    expected = (
        micro_cents(fresh, input_price)
        + micro_cents(cache_read or 0, input_price if cache_read_price is None else cache_read_price)
        + micro_cents(cache_write or 0, input_price if cache_write_price is None else cache_write_price)
        + micro_cents(output_tokens or 0, output_price)
    )
    assert cost == (expected / 100000, expected, "v")


def test_tiered_prices_are_computed_by_genai_prices() -> None:
    book = PriceBook()
    price = book.price("claude-sonnet-4-5", "anthropic")
    assert price is not None
    assert price.model_price is not None  # tiered above 200k input tokens
    small = cost_of(Usage(input_tokens=1000, output_tokens=0), price)
    large = cost_of(Usage(input_tokens=300_000, output_tokens=0), price)
    assert small is not None and large is not None
    assert small.micro_cents == 300  # $3/M
    assert large.micro_cents == 300 * 300 * 2  # $6/M past the tier


def test_unknown_model_gets_no_price_and_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    book = PriceBook()
    with caplog.at_level(logging.WARNING):
        assert book.price("my-private-model") is None
        assert book.price("my-private-model") is None
    assert [r.getMessage() for r in caplog.records].count(
        "otel-analytics: no price known for model 'my-private-model'; its interactions get no cost."
    ) == 1


def test_overrides_from_toml_win_and_add_models(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        'version = "ours-1"\n[models."llama-internal"]\nprovider = "self-hosted"\ninput = 0.2\noutput = 0.6\n'
        '[models."gpt-4o"]\ninput = 1\noutput = 2\n'
    )
    book = PriceBook(str(path))
    llama = book.price("llama-internal")
    assert llama is not None and llama.version == "ours-1"
    assert book.provider("llama-internal") == "self-hosted"
    gpt = book.price("gpt-4o", "openai")
    assert gpt is not None and (gpt.input, gpt.output) == (1.0, 2.0)
    cost = cost_of(Usage(input_tokens=1_000_000, output_tokens=1_000_000), gpt)
    assert cost is not None and cost.micro_cents == 300_000


def test_overrides_from_json(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": {"m": {"input": 1.5, "output": 3, "cache_read": 0.5}}}))
    price = PriceBook(str(path)).price("m")
    assert price is not None and price.cache_read == 0.5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not toml [", "cannot be read"),
        ('[models."m"]\ninput = -1\noutput = 1\n', "models.m.input=-1"),
        ('[models."m"]\ninput = "cheap"\noutput = 1\n', "models.m.input='cheap'"),
        ('[models."m"]\ninput = 1\n', "models.m.output=None"),
        ("version = 1\n", "needs a 'models' table"),
    ],
)
def test_bad_override_files_are_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match="ANALYTICS_PRICING_FILE") as caught:
        PriceBook(str(path))
    assert message in str(caught.value)


def test_provider_inference() -> None:
    assert infer_provider("gpt-4o") == "openai"
    assert infer_provider("o3-mini") == "openai"
    assert infer_provider("claude-3-5-haiku-20241022") == "anthropic"
    assert infer_provider("gemini-2.5-pro") == "gcp.gemini"
    assert infer_provider("mistral-large-latest") == "mistral_ai"
    assert infer_provider("my-model") is None
    assert infer_provider(None) is None


def test_lookups_of_new_names_past_the_budget_are_skipped_then_made_once_it_refills(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    book = PriceBook(budget=NewNameBudget(burst=2, per_second=1.0), clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        assert book.price("no-such-model-a") is None and book.looked_up("no-such-model-a")
        assert book.price("gpt-4o", "openai") is not None
        # The budget is spent: a new name is not looked up (nor warned about, nor remembered) ...
        assert book.price("gpt-4o-mini", "openai") is None
        assert not book.looked_up("gpt-4o-mini", "openai")
        assert book.provider("acme-large") is None
        # ... while names already looked up are answered as before.
        assert book.price("gpt-4o", "openai") is not None
        assert book.price("no-such-model-a") is None
        now[0] = 1.0  # one more lookup's worth
        price = book.price("gpt-4o-mini", "openai")
        assert price is not None and price.input == 0.15
    assert [r.getMessage() for r in caplog.records] == [
        "otel-analytics: no price known for model 'no-such-model-a'; its interactions get no cost."
    ]


def test_the_budget_refills_at_its_rate_up_to_its_burst() -> None:
    now = [0.0]
    book = PriceBook(budget=NewNameBudget(burst=3, per_second=2.0), clock=lambda: now[0])
    found = [book.price(f"no-such-model-{i}") is None and book.looked_up(f"no-such-model-{i}") for i in range(4)]
    assert found == [True, True, True, False]
    now[0] = 100.0  # a long pause refills up to the burst, not beyond
    found = [book.looked_up(name) for name in (f"new-{i}" for i in range(5)) if book.price(name) is None]
    assert found == [True, True, True, False, False]
    now[0] = 100.5  # half a second at 2 per second: one lookup
    assert [book.price(name) is None and book.looked_up(name) for name in ("late-1", "late-2")] == [True, False]


def test_overrides_and_unlimited_books_ignore_the_budget(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text('[models."llama-internal"]\ninput = 0.2\noutput = 0.6\n')
    spent = PriceBook(str(path), budget=NewNameBudget(burst=0, per_second=0.0))
    assert spent.price("llama-internal") is not None  # from the file: no table walk to limit
    assert spent.price("gpt-4o", "openai") is None
    unlimited = PriceBook()  # the tracker's and the CLI's: every name stored gets its price
    assert all(unlimited.price(f"no-such-model-{i}") is None for i in range(150))
    assert unlimited.price("gpt-4o", "openai") is not None


@pytest.mark.parametrize(("setting", "looked_up"), [("0.5", 5), ("unlimited", 300)])
def test_the_request_paths_budget_is_the_setting(clean_env: pytest.MonkeyPatch, setting: str, looked_up: int) -> None:
    clean_env.setenv("ANALYTICS_NEW_MODELS_PER_S", setting)
    runtime = Runtime.build(Settings.load(), TracerProvider())
    names = [f"no-such-model-{i}" for i in range(300)]
    found = [runtime.prices.price(name) is None and runtime.prices.looked_up(name) for name in names]
    assert found == [True] * looked_up + [False] * (300 - looked_up)  # 0.5 a second: 5 at once
    assert NewNameBudget.per_second_of(Settings().new_models_per_s) == NewNameBudget(200, 20.0)  # the default


@pytest.mark.parametrize("model", ["gemini-1.5-pro", "claude-sonnet-4-5", "gpt-4o"])
def test_the_local_tracker_prices_as_the_client_does_to_the_micro_cent(tmp_path: Path, model: str) -> None:
    """Below and past the long-context tiers, and after a restart (prices then come from its table)."""
    capture = CaptureAnalytics()
    try:
        for prompt in (1_000, 300_000, 1_000, 300_000):
            oa.track_interaction(
                session_id=f"conv-{prompt}", user_id="u", model_name=model, prompt_tokens=prompt, completion_tokens=900
            )
        spans = list(capture.finished())
    finally:
        capture.close()
    db = str(tmp_path / "prices.db")
    for batch in (spans[:2], spans[2:]):  # a tracker, then the same database in a new one
        tracker = LocalTracker(db)
        try:
            exporter = TrackerSpanExporter(url=tracker.url)  # not told to send costs: the tracker prices
            exporter.export(batch)
            exporter.shutdown()
        finally:
            tracker.close()
    stored = LocalTracker(db)
    try:
        rows = stored.rows("SELECT prompt_tokens, total_cost_mc FROM interactions ORDER BY rowid")
    finally:
        stored.close()
    for span, (prompt, tracker_mc) in zip(spans, rows, strict=True):
        client_mc = (span.attributes or {})["analytics.cost.micro_cents"]
        expected = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=prompt, output_tokens=900),
            model,
            genai_request_timestamp=datetime.now(tz=UTC),
        ).total_price
        assert client_mc == int((Decimal(expected) * 100000).to_integral_value()), prompt
        assert tracker_mc == client_mc, (model, prompt)


def test_the_local_tracker_takes_the_clients_price_file(tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('version = "ours"\n[models."llama-internal"]\ninput = 2.0\noutput = 4.0\n')
    tracker = LocalTracker(str(tmp_path / "p.db"), pricing_file=str(prices))
    try:
        body = {
            "session_id": "conv-p",
            "user_id": "u",
            "type": "chat",
            "timestamp": "2026-11-29T10:00:00Z",
            "model_name": "llama-internal",
            "prompt_tokens": 1000,
            "completion_tokens": 500,
        }
        assert tracker.client.post("/v1/track/interaction", json=body).status_code == 202
        assert tracker.rows("SELECT total_cost_mc FROM interactions") == [(200 + 200,)]
        # A price set by hand in the table wins over the book.
        tracker.rows(
            "INSERT INTO pricing (provider, model, token_kind, usd_per_million, effective_date, source) VALUES "
            "('self', 'hand-priced', 'input', 1.0, '2026-01-01', 'set by ops'), "
            "('self', 'hand-priced', 'output', 1.0, '2026-01-01', 'set by ops')"
        )
        body |= {"model_name": "hand-priced", "session_id": "conv-h"}
        assert tracker.client.post("/v1/track/interaction", json=body).status_code == 202
        assert tracker.rows("SELECT total_cost_mc FROM interactions WHERE session_id = 'conv-h'") == [(150,)]
    finally:
        tracker.close()
