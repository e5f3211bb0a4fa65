from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from otel_analytics import usage_json
from otel_analytics.usage import Usage, read_response
from otel_analytics.usage_json import read_json
from tests.helpers import USAGE_COUNT_KEYS

# Values of every JSON type, the valid ones (counts, names) among them.
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-5, max_value=2**70)
    | st.floats(allow_nan=True)
    | st.sampled_from(["", "stop", "length", "gpt-4o", "message_start", "message_delta", "response", "completed"])
)
_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner)
)
_counts = st.integers(min_value=0, max_value=10**6) | _values
_details = (
    st.none() | st.fixed_dictionaries({}, optional={"cached_tokens": _counts, "reasoning_tokens": _counts}) | _values
)
_usages = (
    st.none()
    | _values
    | st.fixed_dictionaries(
        {},
        optional={key: _counts for key in USAGE_COUNT_KEYS}
        | {key: _details for key in ("prompt_tokens_details", "completion_tokens_details", "input_tokens_details")},
    )
)
_choices = st.lists(
    st.fixed_dictionaries({}, optional={"finish_reason": _values | st.sampled_from(["stop", "tool_calls"])}) | _values,
    max_size=3,
)
_documents = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from(["chatcmpl-1", ""]) | st.integers() | _values,
        "model": _values | st.just("gpt-4o-mini"),
        "object": st.sampled_from(["chat.completion", "chat.completion.chunk", "response"]) | _values,
        "choices": _choices | _values,
        "usage": _usages,
        "type": st.none() | st.sampled_from(["message_start", "message_delta", "response.completed"]) | _values,
        "stop_reason": _values,
        "delta": st.fixed_dictionaries({}, optional={"stop_reason": _values | st.just("end_turn")}) | _values,
        "status": st.sampled_from(["completed", "incomplete"]) | _values,
        "message": st.none() | st.fixed_dictionaries({}, optional={"usage": _usages, "model": _values}),
        "created": _values,
        "system_fingerprint": _values,
    },
)


def _general(raw: bytes, into: Usage) -> bool:
    """What read_json must equal: the whole document parsed, then read_response."""
    try:
        document: Any = json.loads(raw)
    except ValueError:
        return False
    return type(document) is dict and read_response(document, into)


def _typed(raw: bytes) -> bool:
    try:
        return usage_json._plain_chat(usage_json._decoder.decode(raw))
    except Exception:
        return False


def _both(raw: bytes, before: Usage) -> tuple[tuple[bool, Usage], tuple[bool, Usage]]:
    fast, general = copy.deepcopy(before), copy.deepcopy(before)
    return (read_json(raw, fast), fast), (_general(raw, general), general)


@settings(max_examples=600, deadline=None)
@given(_documents | _values, st.booleans())
def test_read_json_is_read_response_of_the_parsed_text(document: Any, prefilled: bool) -> None:
    raw = json.dumps(document).encode()
    before = Usage(output_tokens=3, response_model="earlier", finish_reasons=["length"]) if prefilled else Usage()
    fast, general = _both(raw, before)
    assert fast == general, raw
    event("typed path" if _typed(raw) else "general path")


def test_openai_answers_take_the_typed_path_and_other_shapes_the_general_one(monkeypatch: Any) -> None:
    general: list[Any] = []

    def read_generally(document: Any, into: Usage) -> bool:
        general.append(document)
        return read_response(document, into)

    monkeypatch.setattr(usage_json, "read_response", read_generally)
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 4}},
    }
    usage = Usage()
    assert read_json(json.dumps(completion).encode(), usage) and not general
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (9, 2, 4)
    assert usage.finish_reasons == ["stop"] and usage.response_id == "chatcmpl-1"
    anthropic = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}}
    responses = {"object": "response", "status": "completed", "usage": {"input_tokens": 5, "output_tokens": 1}}
    for other in (anthropic, responses):
        assert read_json(json.dumps(other).encode(), Usage())
    assert general == [anthropic, responses]


def test_duplicate_keys_and_bad_text_read_as_the_general_path_reads_them() -> None:
    duplicate = b'{"model": "a", "model": "b", "usage": {"prompt_tokens": 1, "prompt_tokens": 2}}'
    fast, general = _both(duplicate, Usage())
    assert fast == general and fast[1].response_model == "b" and fast[1].input_tokens == 2
    many = json.dumps({"choices": [{"finish_reason": f"r{i}"} for i in range(70)], "model": "m"}).encode()
    fast, general = _both(many, Usage())
    assert fast == general and len(fast[1].finish_reasons) == 64  # read_response reads 64 choices
    for raw in (b"", b"[1, 2]", b'{"usage": ', b"null", b'"text"'):
        fast, general = _both(raw, Usage())
        assert fast == general and not fast[0], raw
    fast, general = _both(b'{"usage": {"prompt_tokens": NaN}}', Usage())
    assert fast == general and fast[0] and fast[1].invalid and fast[1].input_tokens is None  # dropped, flagged


def test_bytes_that_are_not_utf8_inside_a_value_not_read_do_not_hide_the_usage() -> None:
    # The one difference from parsing the whole text: that would refuse it, and lose the usage.
    raw = b'{"model": "m", "choices": [{"message": {"content": "caf\xe9"}, "finish_reason": "stop"}], ' + (
        b'"usage": {"prompt_tokens": 7, "completion_tokens": 1}}'
    )
    usage = Usage()
    assert read_json(raw, usage) and usage.input_tokens == 7 and usage.finish_reasons == ["stop"]
    assert not _general(raw, Usage())
