"""The fast JSON helpers accept and write what the standard library does (orjson first)."""

from __future__ import annotations

import math

import pytest

from otel_analytics._json import dumps, loads
from otel_analytics.tracker.app import parse_json
from otel_analytics.tracker.validation import ContractError


def test_loads_falls_back_for_what_orjson_refuses() -> None:
    # beyond 64 bits: a float (the one difference from json.loads; no count is that large)
    assert loads(b'{"n": 123456789012345678901234567890}') == {"n": 1.2345678901234568e29}
    assert loads('"\\ud800"') == "\ud800"
    assert math.isinf(loads(b"1e999"))
    assert loads(memoryview(b'{"usage": {"prompt_tokens": 3}}')) == {"usage": {"prompt_tokens": 3}}
    with pytest.raises(ValueError, match="Expecting value"):
        loads(b'{"truncated": ')


def test_dumps_is_compact_utf8_and_never_fails_on_python_json_values() -> None:
    assert dumps({"a": "é", "b": [1, 2.5, None, True]}) == '{"a":"é","b":[1,2.5,null,true]}'.encode()
    assert dumps({"n": 2**70}) == b'{"n":1180591620717411303424}'
    assert loads(dumps({"s": "\ud800"})) == {"s": "\ud800"}
    assert dumps(float("nan")) == b"null"


def test_the_tracker_keeps_its_verdicts() -> None:
    assert parse_json(b'{"s": "\\ud800"}') == {"s": "\ud800"}
    for bad in (b"[NaN]", b"[Infinity]", b"{", b""):
        with pytest.raises(ContractError):
            parse_json(bad)
