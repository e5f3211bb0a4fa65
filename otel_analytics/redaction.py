"""Secrets kept out of everything otel-analytics records: metadata, URLs, headers.

- **Metadata** (free-form, from the app or a proxied request) is cleaned at any depth: the value
  of a key whose name says it holds a secret (``authorization``, ``cookie``, ``api_key``,
  ``accessToken``, ``client_secret``, ...) becomes ``[REDACTED]`` unless it is a number, and text that
  looks like a credential (``Bearer ...``, ``sk-...`` API keys, AWS, GitHub, Slack and Google keys,
  JWTs) is replaced wherever it stands. It is also bounded (depth, keys, items, text, size), so
  a metadata object can never make an interaction too large for the tracker. Every path metadata
  takes goes through :func:`clean_metadata`: spans, the tracker exporter's mapping, the local
  tracker's own writes and its OTLP ingest.
- **URLs**: the values of credential-looking query parameters (``api_key``, ``key``, ``token``,
  ``access_token``, ``sig``, ``signature``, the HTTP conventions' list, and any name given in
  ``ANALYTICS_REDACT_QUERY_PARAMS``) become ``REDACTED`` on every span the package makes or applies.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import unquote_plus

from ._ranges import MAX_COUNT
from ._text import clean

REDACTED: Final = "[REDACTED]"
TRUNCATED: Final = "[TRUNCATED]"
MAX_DEPTH: Final = 6
MAX_KEYS: Final = 64
MAX_ITEMS: Final = 64
MAX_TEXT: Final = 1024
MAX_KEY: Final = 128
MAX_BYTES: Final = 8192
"""Most bytes one metadata object takes as JSON: a batch of 100 interactions stays within the
tracker's 1 MiB body."""

# A key is secret when one of its words is one of these, or its words joined hold a phrase below.
_SECRET_WORDS = frozenset(
    {
        "auth",
        "authorization",
        "bearer",
        "cookie",
        "cookies",
        "credential",
        "credentials",
        "csrf",
        "jwt",
        "passwd",
        "password",
        "passphrase",
        "pwd",
        "secret",
        "signature",
        "token",
        "xsrf",
    }
)
_SECRET_PHRASES = ("api_key", "apikey", "access_key", "private_key", "secret_key", "session_key", "set_cookie")
_NUMBERS = frozenset({bool, int, float})
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# Credentials by their shape, wherever they stand in a text.
_SECRET_TEXT = re.compile(
    r"(?i:\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}"  # an Authorization header's value
    r"|\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}"  # OpenAI and Anthropic keys
    r"|\b[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|\bAKIA[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}"  # GitHub tokens
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|\bAIza[0-9A-Za-z_-]{35}"  # Google API keys
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWTs
)
DEFAULT_QUERY_PARAMS: Final = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "auth",
        "client_secret",
        "code",
        "jwt",
        "key",
        "password",
        "secret",
        "sig",
        "signature",
        "token",
        # The HTTP semantic conventions' list (presigned URLs).
        "awsaccesskeyid",
        "x-amz-credential",
        "x-amz-security-token",
        "x-amz-signature",
        "x-goog-signature",
    }
)


@functools.lru_cache(maxsize=4096)
def secret_key(key: str) -> bool:
    """Whether a key's name says its value is a secret (``Authorization``, ``x-api-key``,
    ``accessToken``, ``DB_PASSWORD``); ``max_tokens`` and ``author`` are not."""
    words = [word.lower() for word in _WORDS.findall(key)]
    if any(word in _SECRET_WORDS for word in words):
        return True
    joined = "_".join(words)
    return any(phrase in joined for phrase in _SECRET_PHRASES)


# A URL's secret query parameters inside a text (an upstream URL kept in metadata, say).
_SECRET_QUERY_IN_TEXT = re.compile(
    r"(?i)([?&](?:access_token|api_key|apikey|auth|client_secret|code|jwt|key|password|secret|sig|signature|token"
    r"|x-amz-signature|x-amz-security-token|x-amz-credential|x-goog-signature|awsaccesskeyid)=)[^&#\s\"']+"
)


def redact_text(text: str) -> str:
    """``text`` with every credential-shaped part replaced by ``[REDACTED]``, and the values of
    secret query parameters in URLs within it by ``REDACTED``."""
    if len(text) < 8:
        return text
    if "=" in text:
        text = _SECRET_QUERY_IN_TEXT.sub(r"\1REDACTED", text)
    return _SECRET_TEXT.sub(REDACTED, text)


class _Budget:
    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_BYTES


def _clean_value(value: Any, depth: int, budget: _Budget) -> Any:
    if value is None or type(value) is bool:
        budget.left -= 8
        return value
    if type(value) is int:  # beyond 2**53 a JavaScript reader (the deployed worker) rounds it: its text
        budget.left -= 20
        return value if -MAX_COUNT <= value <= MAX_COUNT else str(value)
    if type(value) is float:
        budget.left -= 24
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = redact_text(clean(value[:MAX_TEXT]))
        budget.left -= len(text) + 2
        return text
    if isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            return TRUNCATED
        return _clean_object(value, depth + 1, budget)
    if isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            return TRUNCATED
        out = []
        for item in list(value)[:MAX_ITEMS]:
            if budget.left <= 0:
                out.append(TRUNCATED)
                break
            out.append(_clean_value(item, depth + 1, budget))
        return out
    return _clean_value(str(value), depth, budget)  # dates, ids, enums: their text


def _clean_object(value: Mapping[Any, Any], depth: int, budget: _Budget) -> dict[str, Any]:
    out: dict[str, Any] = {}
    dropped = 0
    for raw_key, item in value.items():
        if len(out) >= MAX_KEYS or budget.left <= 0:
            dropped += 1
            continue
        key = clean(str(raw_key)[:MAX_KEY])
        budget.left -= len(key) + 4
        # A number is a count, never a credential (``token_count``): only other values are hidden.
        secret = secret_key(key) and not (item is None or type(item) in _NUMBERS)
        out[key] = REDACTED if secret else _clean_value(item, depth, budget)
    if dropped:
        out["_truncated"] = dropped  # how many keys did not fit
    return out


def clean_metadata(metadata: Mapping[Any, Any]) -> dict[str, Any]:
    """Metadata fit to record: secrets redacted at any depth, strings valid Unicode, bounded."""
    return _clean_object(metadata, 1, _Budget())


class QueryRedactor:
    """Redacts the values of secret query parameters in URLs and query strings."""

    def __init__(self, extra_names: Iterable[str] = ()) -> None:
        self._names = DEFAULT_QUERY_PARAMS | {name.strip().lower() for name in extra_names if name.strip()}

    def _secret(self, name: str) -> bool:
        name = unquote_plus(name).strip().lower()
        return name in self._names or secret_key(name)

    def query(self, query: str) -> str:
        """``a=1&api_key=s`` -> ``a=1&api_key=REDACTED``; everything else kept as it was written."""
        if not query:
            return query
        parts = query.split("&")
        changed = False
        for index, part in enumerate(parts):
            name, sep, value = part.partition("=")
            if sep and value and self._secret(name):
                parts[index] = f"{name}=REDACTED"
                changed = True
        return "&".join(parts) if changed else query

    def url(self, url: str) -> str:
        """A URL or a request target with its query's secrets redacted (fragment kept)."""
        base, sep, rest = url.partition("?")
        if not sep:
            return url
        query, hash_sep, fragment = rest.partition("#")
        return base + "?" + self.query(query) + hash_sep + fragment
