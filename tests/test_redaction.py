"""Secrets in metadata (at any depth, by key and by shape) and in URLs are redacted; metadata is bounded."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_analytics.redaction import (
    MAX_BYTES,
    REDACTED,
    QueryRedactor,
    clean_metadata,
    redact_text,
    secret_key,
)

SECRET_KEYS = ["Authorization", "cookie", "Set-Cookie", "x-api-key", "apiKey", "DB_PASSWORD", "client_secret"]
SECRET_KEYS += ["oauth_token", "accessToken", "refresh-token", "privateKey", "jwt", "csrf_token", "X-Auth-Token"]
PLAIN_KEYS = ["max_tokens", "prompt_tokens", "author", "session_id", "span_id", "model", "endpoint", "keyword"]


def test_secret_keys_by_their_words() -> None:
    assert [key for key in SECRET_KEYS if not secret_key(key)] == []
    assert [key for key in PLAIN_KEYS if secret_key(key)] == []


def test_credentials_are_found_by_their_shape_anywhere_in_a_text() -> None:
    for secret in (
        "Bearer abc.def-ghi_123",
        "basic dXNlcjpwYXNzd29yZA==",
        "sk-proj-abcdefghijklmnop1234",
        "sk-ant-api03-abcdefghijklmnopqr",
        "sk_live_abcdefghijklmnop1234",
        "AKIAABCDEFGHIJKLMNOP",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "xoxb-1234567890-abcdef",
        "AIza" + "x" * 35,
        "eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.abcdefghijkl",
    ):
        assert redact_text(f"see {secret} here") == f"see {REDACTED} here", secret
    assert (
        redact_text("https://h/v1?x=1&access_token=abc123&key=k#f")
        == "https://h/v1?x=1&access_token=REDACTED&key=REDACTED#f"
    )
    assert redact_text("a plain sentence, with a key word and skis") == "a plain sentence, with a key word and skis"


def test_query_redactor_keeps_everything_but_the_secret_values() -> None:
    redactor = QueryRedactor(["session_ticket"])
    assert redactor.query("q=paris&api_key=s1&KEY=s2&sig=s3&session_ticket=s4&page=2") == (
        "q=paris&api_key=REDACTED&KEY=REDACTED&sig=REDACTED&session_ticket=REDACTED&page=2"
    )
    assert redactor.url("/p?X-Amz-Signature=abc&a=%20b#top") == "/p?X-Amz-Signature=REDACTED&a=%20b#top"
    assert redactor.url("/no/query") == "/no/query"
    assert redactor.query("flag&token=&=x") == "flag&token=&=x"  # nothing to hide


def test_nested_metadata_is_redacted_and_numbers_are_kept() -> None:
    cleaned = clean_metadata(
        {
            "request": {"headers": {"Authorization": "Bearer t0ken-value", "Accept": "json"}},
            "calls": [{"credentials": {"password": "p"}}, "Bearer another-token"],
            "token_count": 42,
            "password": 1234,
            "when": object(),
        }
    )
    assert cleaned["request"]["headers"] == {"Authorization": REDACTED, "Accept": "json"}
    assert cleaned["calls"] == [{"credentials": REDACTED}, REDACTED]
    assert (cleaned["token_count"], cleaned["password"]) == (42, 1234)  # a number is a count
    assert cleaned["when"].startswith("<object")  # what JSON cannot hold: its text


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(exclude_categories=())),
    lambda inner: st.lists(inner, max_size=80) | st.dictionaries(st.text(max_size=20), inner, max_size=80),
    max_leaves=200,
)


def _strings_under_secret_keys(value: Any, under_secret: bool = False) -> list[str]:
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in _strings_under_secret_keys(item, secret_key(key))]
    if isinstance(value, list):
        return [s for item in value for s in _strings_under_secret_keys(item, under_secret)]
    # A number is kept whatever its key (an integer beyond 2**53 as its text).
    return (
        [value]
        if under_secret and isinstance(value, str) and value != REDACTED and not value.lstrip("-").isdigit()
        else []
    )


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(SECRET_KEYS + PLAIN_KEYS) | st.text(max_size=20), JSON, max_size=100))
def test_any_metadata_comes_out_storable_bounded_and_without_secret_values(metadata: dict[str, Any]) -> None:
    cleaned = clean_metadata(metadata)
    encoded = orjson.dumps(cleaned)  # valid Unicode, finite numbers: every sink takes it
    assert len(encoded) <= MAX_BYTES + 3 * 1024 + 64
    assert _strings_under_secret_keys(cleaned) == []
