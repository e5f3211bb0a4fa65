"""The fast JSON helpers accept and write what the standard library does (orjson first)."""

from __future__ import annotations

import json
import math
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_analytics._json import dumps, loads, top_level
from otel_analytics.tracker.app import parse_json
from otel_analytics.tracker.validation import ContractError


def test_loads_falls_back_for_what_orjson_refuses() -> None:
    # beyond 64 bits: a float (the one difference from json.loads; no count is that large)
    assert loads(b'{"n": 123456789012345678901234567890}') == {"n": 1.2345678901234568e29}
    assert loads('"\\ud800"') == "\ufffd"  # a lone surrogate: kept as U+FFFD, which UTF-8 can hold
    assert math.isinf(loads(b"1e999"))
    assert loads(memoryview(b'{"usage": {"prompt_tokens": 3}}')) == {"usage": {"prompt_tokens": 3}}
    with pytest.raises(ValueError, match="Expecting value"):
        loads(b'{"truncated": ')


def test_dumps_is_compact_utf8_and_never_fails_on_python_json_values() -> None:
    assert dumps({"a": "é", "b": [1, 2.5, None, True]}) == '{"a":"é","b":[1,2.5,null,true]}'.encode()
    assert dumps({"n": 2**70}) == b'{"n":1180591620717411303424}'
    assert loads(dumps({"s": "\ud800"})) == {"s": "\ufffd"}
    assert dumps(float("nan")) == b"null"


def test_the_tracker_keeps_its_verdicts() -> None:
    assert parse_json(b'{"s": "\\ud800", "\\udfff": ["\\ud83d"]}') == {"s": "\ufffd", "\ufffd": ["\ufffd"]}
    for bad in (b"[NaN]", b"[Infinity]", b"{", b""):
        with pytest.raises(ContractError):
            parse_json(bad)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_KEYS = ("model", "stream", "conversationId", "", "é", "a b")


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), _JSON, max_size=8))
def test_top_level_reads_what_the_standard_library_reads(document: dict[str, Any]) -> None:
    raw = json.dumps(document).encode()
    assert top_level(raw, _KEYS) == tuple(json.loads(raw).get(key) for key in _KEYS)


def test_top_level_answers_none_for_what_is_not_an_object() -> None:
    keys = ("model",)
    for raw in (b"[1, 2]", b'"model"', b"3", b"", b"{", b'{"model": "m"} trailing', b"[" * 100_000):
        assert top_level(raw, keys) is None, raw[:20]
    # What msgspec refuses but Python's JSON reads is read as Python's JSON reads it.
    assert top_level(b'{"model": "\\ud800", "n": 1e999}', ("model", "n")) == ("\ufffd", math.inf)
    # Values it does not read are skipped, not decoded: bytes that are not UTF-8 inside them do
    # not hide the keys (Python's JSON and orjson refuse the whole document).
    assert top_level(b'{"text": "\xff\xfe", "model": "m"}', keys) == ("m",)


def test_top_level_never_builds_the_values_it_does_not_return() -> None:
    history = [{"role": "user", "content": f"message {i} " + "x" * 400} for i in range(100)]
    raw = json.dumps({"messages": history, "model": "gpt-4o-mini"}).encode()

    def peak(read: Any) -> int:
        tracemalloc.start()
        try:
            read()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    top_level(raw, ("model",))  # the decoder for these keys is built once, before measuring
    whole = peak(lambda: loads(raw))
    keys_only = peak(lambda: top_level(raw, ("model",)))
    assert whole > len(raw)  # the history's strings and dicts
    assert keys_only < 2_000, (keys_only, whole)
