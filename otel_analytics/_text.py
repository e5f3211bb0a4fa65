"""Strings every sink can take.

A Python ``str`` can hold a lone surrogate (``"\\ud800"``, which JSON's ``\\ud800`` escape and a
JavaScript string both produce); UTF-8 cannot. SQLite, protobuf (OTLP) and JSON on the wire all
need UTF-8, so one such character in an attribute failed a whole OTLP batch, and in a tracker
field a request with a 500. Every string otel-analytics takes from outside (request bodies, SDK
answers, API arguments, tracker bodies) passes through :func:`clean`, which replaces each lone
surrogate with U+FFFD: the value is kept, in the one form every sink stores and reads back.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(value: str) -> str:
    """``value`` with lone surrogates replaced by U+FFFD (the same object when it has none)."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub(REPLACEMENT, value)
    return value


def clean_json(value: Any) -> Any:
    """A parsed JSON document with every string in it, keys included, :func:`clean`.

    For documents the standard library parsed (orjson, tried first, refuses lone surrogates, so
    only those can hold one). Raises ``RecursionError`` for one nested past the interpreter's
    limit, as the parse itself would.
    """
    kind = type(value)
    if kind is str:
        return clean(value)
    if kind is dict:
        return {clean(key) if type(key) is str else key: clean_json(item) for key, item in value.items()}
    if kind is list:
        return [clean_json(item) for item in value]
    return value
