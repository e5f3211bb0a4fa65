from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from otel_analytics.ids import session_root_span_id, session_trace_id


def test_fixed_vector_matches_the_documented_rule() -> None:
    # The worked example of docs/sessions.md: reproduce it in any language.
    assert format(session_trace_id("conv-1"), "032x") == "13b3ce507342d66227f23126117dec32"
    assert format(session_root_span_id("conv-1"), "016x") == "f629897a679b472f"
    digest = hashlib.sha256(b"otel-analytics/v1/trace\x00conv-1").digest()
    assert session_trace_id("conv-1") == int.from_bytes(digest[:16], "big")
    digest = hashlib.sha256(b"otel-analytics/v1/span\x00conv-1").digest()
    assert session_root_span_id("conv-1") == int.from_bytes(digest[:8], "big")


@given(st.text(min_size=1, max_size=300))
def test_ids_are_valid_and_pure(session_id: str) -> None:
    trace_id = session_trace_id(session_id)
    span_id = session_root_span_id(session_id)
    assert 0 < trace_id < 2**128
    assert 0 < span_id < 2**64
    assert session_trace_id(session_id) == trace_id
    assert session_root_span_id(session_id) == span_id


def test_different_sessions_get_different_traces() -> None:
    ids = {session_trace_id(f"conv-{n}") for n in range(1000)}
    assert len(ids) == 1000
