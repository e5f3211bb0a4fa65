from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_analytics.usage import Usage, read_response, token_count
from tests.helpers import USAGE_COUNT_KEYS


def usage_from_response(response: Any) -> Usage | None:
    """Usage from one response object or stream event; ``None`` when it carries nothing useful."""
    usage = Usage()
    return usage if read_response(response, usage) else None


def test_openai_chat_completion() -> None:
    usage = usage_from_response(
        {
            "id": "chatcmpl-1",
            "model": "gpt-4o",
            "choices": [{"finish_reason": "stop"}, {"finish_reason": "length"}],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 50,
                "prompt_tokens_details": {"cached_tokens": 80},
                "completion_tokens_details": {"reasoning_tokens": 10},
            },
        }
    )
    assert usage == Usage(100, 50, 80, None, 10, "gpt-4o", "chatcmpl-1", ["stop", "length"])


def test_openai_responses_api() -> None:
    usage = usage_from_response(
        {
            "id": "resp_1",
            "model": "o3",
            "usage": {
                "input_tokens": 300,
                "output_tokens": 40,
                "input_tokens_details": {"cached_tokens": 100},
                "output_tokens_details": {"reasoning_tokens": 30},
            },
        }
    )
    assert usage is not None
    assert (usage.input_tokens, usage.cache_read_tokens, usage.reasoning_tokens) == (300, 100, 30)


def _responses_stream() -> bytes:
    """An OpenAI Responses API stream, as the API sends it (abridged to the fields that matter)."""
    import json

    response = {"id": "resp_7", "object": "response", "status": "in_progress", "model": "gpt-4.1-mini-2025-04-14"}
    events = [
        {"type": "response.created", "sequence_number": 0, "response": response | {"output": [], "usage": None}},
        {"type": "response.in_progress", "sequence_number": 1, "response": response | {"output": [], "usage": None}},
        *(
            {"type": "response.output_text.delta", "item_id": "msg_7", "output_index": 0, "delta": f"w{i} "}
            for i in range(5)
        ),
        {
            "type": "response.completed",
            "sequence_number": 8,
            "response": response
            | {
                "status": "completed",
                "output": [{"type": "message", "content": [{"type": "output_text", "text": "w0 w1 w2 w3 w4"}]}],
                "usage": {
                    "input_tokens": 36,
                    "input_tokens_details": {"cached_tokens": 12},
                    "output_tokens": 87,
                    "output_tokens_details": {"reasoning_tokens": 20},
                    "total_tokens": 123,
                },
            },
        },
    ]
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def test_an_openai_responses_stream_reports_its_usage_however_it_is_cut() -> None:
    stream = _responses_stream()
    whole = _read([stream])
    assert whole is not None and whole.reported
    assert (whole.input_tokens, whole.output_tokens, whole.cache_read_tokens, whole.reasoning_tokens) == (
        36,
        87,
        12,
        20,
    )
    assert (whole.response_model, whole.response_id) == ("gpt-4.1-mini-2025-04-14", "resp_7")
    assert whole.finish_reasons == ["completed"]  # not "in_progress", which the first events say
    events = [event + b"\n\n" for event in stream.split(b"\n\n") if event]
    assert _read(events) == whole
    for cut in range(1, len(stream), 7):
        assert _read([stream[:cut], stream[cut:]]) == whole, cut
    # A type of any other JSON kind is only not a lifecycle event (a list is not even hashable).
    for kind in (["response.completed"], {"a": 1}, 3, None):
        odd = usage_from_response({"type": kind, "usage": {"prompt_tokens": 2, "completion_tokens": 1}})
        assert odd is not None and (odd.input_tokens, odd.output_tokens) == (2, 1)
    # The lifecycle events before the end carry the model and no usage yet.
    created = usage_from_response({"type": "response.created", "response": {"model": "m", "usage": None}})
    assert created is not None and created.response_model == "m" and not created.reported


def test_anthropic_message_counts_cached_tokens_as_input() -> None:
    usage = usage_from_response(
        {
            "id": "msg_1",
            "type": "message",
            "model": "claude-sonnet-4-5",
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 0},
        }
    )
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (10, 5, 0)
    assert usage.finish_reasons == ["end_turn"]


def test_anthropic_stream_events_merge() -> None:
    total = Usage()
    start = {
        "type": "message_start",
        "message": {"id": "msg_2", "model": "claude-3-5-haiku-20241022", "usage": {"input_tokens": 25}},
    }
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}}
    for event in (start, {"type": "content_block_delta", "delta": {"text": "hi"}}, delta):
        observed = usage_from_response(event)
        if observed is not None:
            total.merge(observed)
    assert (total.input_tokens, total.output_tokens) == (25, 15)
    assert total.response_id == "msg_2"
    assert total.response_model == "claude-3-5-haiku-20241022"
    assert total.finish_reasons == ["end_turn"]


def test_sdk_like_objects_with_hostile_attributes() -> None:
    class Hostile:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("no")

    assert usage_from_response(Hostile()) is None
    reply = SimpleNamespace(model="gpt-4o", usage=SimpleNamespace(prompt_tokens=3, completion_tokens=4), choices=[])
    usage = usage_from_response(reply)
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (3, 4)


def test_nothing_useful_gives_none() -> None:
    nothing: tuple[Any, ...] = (None, "text", b"bytes", 42, [], {}, {"choices": "x"}, {"usage": "lots"})
    for value in nothing:
        assert usage_from_response(value) is None


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


usage_keys = st.sampled_from(USAGE_COUNT_KEYS)


@given(st.dictionaries(usage_keys, junk))
def test_token_counts_only_ever_come_from_non_negative_ints(raw_usage: dict[str, Any]) -> None:
    usage = usage_from_response({"usage": raw_usage, "model": "m"})
    assert usage is not None
    for value in (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens):
        assert value is None or (type(value) is int and value >= 0)


counts = st.none() | st.integers(min_value=-1, max_value=50)
events = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["message", "message_delta", "message_start", "response"]),
        "usage": st.dictionaries(usage_keys, counts),
        "model": st.sampled_from(["", "m1", "m2", None, 3]),
        "id": st.sampled_from(["", "id1", "id2", None]),
        "choices": st.lists(st.fixed_dictionaries({"finish_reason": st.sampled_from(["stop", "length", None, 1])})),
        "stop_reason": st.sampled_from(["end_turn", "", None]),
        "delta": st.fixed_dictionaries({}, optional={"stop_reason": st.sampled_from(["max_tokens", None])}),
    },
)


@settings(deadline=None)  # timing is not the point: a loaded CI machine must not fail it
@given(st.lists(events | st.fixed_dictionaries({"type": st.just("message_start"), "message": events}), max_size=4))
def test_reading_events_into_one_usage_equals_merging_each_events_usage(stream: list[dict[str, Any]]) -> None:
    from otel_analytics.usage import read_response

    merged, folded = Usage(), Usage()
    for event in stream:
        found = usage_from_response(event)
        if found is not None:
            merged.merge(found)
        assert read_response(event, folded) is (found is not None)
    assert folded == merged


def test_token_count() -> None:
    assert token_count(0) == 0
    assert token_count(7) == 7
    for bad in (-1, True, 1.0, math.nan, "3", None):
        assert token_count(bad) is None


def _sse_stream() -> bytes:
    import json

    base: dict[str, Any] = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "model": "gpt-4o-mini-2024-07-18"}
    events = [
        base | {"choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}]} for i in range(5)
    ]
    events.append(base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append(base | {"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 6, "total_tokens": 36}})
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


def _read(chunks: list[bytes]) -> Usage | None:
    from otel_analytics.answers import SseInspector

    inspector = SseInspector(1 << 20)
    for chunk in chunks:
        inspector.feed(chunk)
    return inspector.result()[0]


def test_an_sse_stream_reads_the_same_however_it_is_cut() -> None:
    stream = _sse_stream()
    whole = _read([stream])
    assert whole is not None
    assert (whole.input_tokens, whole.output_tokens, whole.finish_reasons) == (30, 6, ["stop"])
    assert whole.response_model == "gpt-4o-mini-2024-07-18"
    events = [event + b"\n\n" for event in stream.split(b"\n\n") if event]
    assert _read(events) == whole  # one event per chunk: the common case
    assert _read([bytes([b]) for b in stream]) == whole  # a byte at a time
    for cut in range(1, len(stream)):
        assert _read([stream[:cut], stream[cut:]]) == whole, cut
    assert _read([b"", *events, b""]) == whole  # empty chunks change nothing


def test_keep_alive_comments_and_blank_lines_do_not_hide_the_finish_reason() -> None:
    stream = _sse_stream()
    without_usage = stream[
        : stream.index(
            b'data: {"id": "chatcmpl-s", "object": "chat.completion.chunk", "model": '
            b'"gpt-4o-mini-2024-07-18", "choices": [], "usage"'
        )
    ]
    for tail in ([b": ping\n\n"], [b"\n"], [b": ping\n\n", b"data: [DONE]\n\n"]):
        usage = _read([without_usage, *tail])
        assert usage is not None and usage.finish_reasons == ["stop"] and not usage.reported, tail
    with_ping = stream.replace(b"data: [DONE]", b": ping\n\ndata: [DONE]")
    assert _read([with_ping]) == _read([stream])


@pytest.mark.parametrize("batch", [1, 7, 64, 300])
def test_a_stream_reads_the_same_when_its_batches_end_anywhere(monkeypatch: pytest.MonkeyPatch, batch: int) -> None:
    # Chunks are searched in batches of BATCH bytes (32 KiB; these streams are shorter): with
    # small batches, every event and line boundary falls on a batch boundary somewhere.
    from otel_analytics import answers as inspect
    from tests.chat_apps import ANTHROPIC_EVENTS

    for stream in (_sse_stream(), b"".join(ANTHROPIC_EVENTS), _sse_stream().replace(b"\n", b"\r\n")):
        whole = _read([stream])
        monkeypatch.setattr(inspect, "BATCH", batch)
        assert _read([stream]) == whole
        events = [event + b"\n\n" for event in stream.split(b"\n\n") if event]
        assert _read(events) == whole
        assert _read([bytes([b]) for b in stream]) == whole
        for size in (2, 5, 13, 50):
            assert _read([stream[i : i + size] for i in range(0, len(stream), size)]) == whole, size
        monkeypatch.undo()


def test_a_line_longer_than_the_cap_is_skipped_and_never_held(monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_analytics import answers as inspect

    monkeypatch.setattr(inspect, "BATCH", 256)
    stream = _sse_stream()
    inspector = inspect.SseInspector(1024)
    held = 0
    for chunk in [b"data: " + b"x" * 10_000 + b"\n\n", stream]:
        for i in range(0, len(chunk), 100):
            inspector.feed(chunk[i : i + 100])
            held = max(held, len(inspector._tail) + sum(map(len, inspector._chunks)))
    usage = inspector.result()[0]
    assert usage == _read([stream])  # the events after the enormous line are read
    assert held <= 1024 + 256 + 100


def test_an_anthropic_stream_reads_the_same_however_it_is_cut() -> None:
    from tests.chat_apps import ANTHROPIC_EVENTS

    stream = b"".join(ANTHROPIC_EVENTS)
    whole = _read([stream])
    assert whole is not None
    assert (whole.input_tokens, whole.output_tokens, whole.cache_read_tokens) == (125, 15, 100)
    assert whole.finish_reasons == ["end_turn"] and whole.response_model == "claude-3-5-haiku-20241022"
    assert _read(list(ANTHROPIC_EVENTS)) == whole
    assert _read([bytes([b]) for b in stream]) == whole
    for cut in range(1, len(stream)):
        assert _read([stream[:cut], stream[cut:]]) == whole, cut


def test_a_gzip_sse_stream_reads_the_same_however_it_is_cut() -> None:
    import gzip

    from otel_analytics.answers import inspector_for

    stream = _sse_stream()
    packed = gzip.compress(stream)

    def read(chunks: list[bytes]) -> Usage | None:
        inspector = inspector_for(b"text/event-stream; charset=utf-8", b"gzip")
        assert inspector is not None
        for chunk in chunks:
            inspector.feed(chunk)
        return inspector.result()[0]

    whole = _read([stream])
    assert read([packed]) == whole
    for cut in range(1, len(packed)):
        assert read([packed[:cut], packed[cut:]]) == whole, cut


def test_an_openai_stream_with_null_usage_in_every_chunk_is_decoded_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    # stream_options.include_usage: every chunk but the last carries "usage": null (in any JSON
    # spacing). Those are not decoded: the stream costs the usage chunk and the finish reason's.
    import json

    from otel_analytics import answers as inspect
    from otel_analytics import usage_json

    decoded: list[bytes] = []

    def read_json(raw: bytes, into: Usage) -> bool:
        decoded.append(bytes(raw))
        return usage_json.read_json(raw, into)

    monkeypatch.setattr(inspect, "read_json", read_json)
    for separators in ((", ", ": "), (",", ":")):
        plain = _sse_stream()
        events = [json.loads(line[5:]) for line in plain.split(b"\n\n") if line.startswith(b"data: {")]
        with_nulls = (
            b"".join(
                b"data: "
                + json.dumps(
                    {"usage": None, **event} if "usage" not in event else event, separators=separators
                ).encode()
                + b"\n\n"
                for event in events
            )
            + b"data: [DONE]\n\n"
        )
        assert with_nulls.count(b"null") >= 6
        expected = _read([plain])
        decoded.clear()
        assert _read([with_nulls]) == expected
        assert len(decoded) == 2 and b"prompt_tokens" in decoded[0] and b'"stop"' in decoded[1]
    spaced = b'data: {"usage" :\t null, "choices": [{"finish_reason": "stop"}], "model": "m"}\n\n'
    decoded.clear()
    usage = _read([spaced, b"data: [DONE]\n\n"])  # no usage at all: the last event is read, once
    assert usage is not None and usage.finish_reasons == ["stop"] and not usage.reported
    assert len(decoded) == 1
    not_null = _read([b'data: {"type": "usage", "usage": {"input_tokens": 2, "output_tokens": 1}}\n\n'])
    assert not_null is not None and not_null.input_tokens == 2


@pytest.mark.parametrize(
    ("null", "usage"),
    [
        *((null, usage) for null in (b'"usage":null', b'"usage": null') for usage in (b'"usage":{', b'"usage": {')),
        *((b'"usage" :\tnull', usage) for usage in (b'"usage":{', b'"usage": {', b'"usage" : {', b'"usage"\t:{')),
    ],
)
def test_a_usage_object_is_read_whatever_the_spelling_of_the_nulls_before_it(null: bytes, usage: bytes) -> None:
    # A backend that passes OpenAI's chunks on as they came (compact nulls) and writes the last
    # one itself (json.dumps: spaced) mixes the two common spellings in one stream; the object is
    # still read. After nulls in another spacing, an object in any spacing is.
    head = b'data: {"id":"c1","model":"m-1","choices":'
    events = [
        head + b'[{"delta":{"content":"Hi"},"finish_reason":null}],' + null + b"}\n\n",
        head + b'[{"delta":{},"finish_reason":"stop"}],' + null + b"}\n\n",
        head + b"[]," + usage + b'"prompt_tokens":9,"completion_tokens":4}}\n\n',
        b"data: [DONE]\n\n",
    ]
    read = _read(events)
    assert read is not None
    assert (read.input_tokens, read.output_tokens, read.finish_reasons) == (9, 4, ["stop"])


@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": ")])
def test_every_usage_object_between_nulls_is_read_however_the_stream_is_cut(
    monkeypatch: pytest.MonkeyPatch, separators: tuple[str, str]
) -> None:
    # Past a null, the inspector searches for the next usage object in one step: none between
    # may be missed (nulls, a usage object, a null, another object, a null: the shapes read, mixed).
    import json

    from otel_analytics import answers as inspect

    events = [
        {"type": "response.created", "response": {"object": "response", "status": "in_progress", "usage": None}},
        {"type": "response.output_text.delta", "delta": "Hi", "usage": None},
        {"type": "message_start", "message": {"model": "m-1", "usage": {"input_tokens": 5, "output_tokens": 1}}},
        {"type": "response.output_text.delta", "delta": "there", "usage": None},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}},
        {"type": "response.output_text.delta", "delta": "!", "usage": None},
    ]
    stream = b"".join(b"data: " + json.dumps(e, separators=separators).encode() + b"\n\n" for e in events)
    whole = _read([stream])
    assert whole is not None
    assert (whole.input_tokens, whole.output_tokens, whole.response_model) == (5, 7, "m-1")
    assert whole.finish_reasons == ["end_turn"]
    monkeypatch.setattr(inspect, "BATCH", 64)  # a batch boundary inside every event, and between
    for size in (1, 7, 64, 200):
        assert _read([stream[i : i + size] for i in range(0, len(stream), size)]) == whole, size


def test_an_event_only_pythons_json_reads_is_still_read() -> None:
    # orjson refuses lone surrogates; the inspector then asks the standard library.
    event = b'data: {"id": "\\ud800", "model": "m", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}\n\n'
    usage = _read([event, b"data: [DONE]\n\n"])
    assert usage is not None and (usage.input_tokens, usage.output_tokens, usage.response_id) == (3, 4, "\ufffd")


def test_an_openai_responses_finish_reason_is_why_it_is_incomplete_or_how_it_ended() -> None:
    def reasons(**fields: Any) -> list[str]:
        usage = usage_from_response({"id": "resp_1", "object": "response", "model": "o3", **fields})
        assert usage is not None
        return usage.finish_reasons

    assert reasons(status="incomplete", incomplete_details={"reason": "max_output_tokens"}) == ["max_output_tokens"]
    assert reasons(status="incomplete", incomplete_details=None) == ["incomplete"]
    assert reasons(status="completed", incomplete_details=None) == ["completed"]
    assert reasons(status="failed") == ["failed"]
    assert reasons(status="in_progress") == reasons(status="queued") == reasons(status=["odd"]) == []
    # Another API's "status" is not a finish reason.
    other = usage_from_response({"id": "x", "model": "m", "status": "completed"})
    assert other is not None and other.finish_reasons == []
    # A stream that ends incomplete says why.
    stream = _responses_stream().replace(b'"type": "response.completed"', b'"type": "response.incomplete"')
    stream = stream.replace(
        b'"status": "completed"', b'"status": "incomplete", "incomplete_details": {"reason": "content_filter"}'
    )
    cut = _read([stream])
    assert cut is not None and cut.finish_reasons == ["content_filter"] and cut.output_tokens == 87


chat_chunks = st.fixed_dictionaries(
    {
        "choices": st.lists(
            st.fixed_dictionaries(
                {"index": st.just(0), "finish_reason": st.sampled_from(["stop", "length", None, 1, ""])}
            ),
            max_size=2,
        ),
        "usage": st.sampled_from([None, {"prompt_tokens": 5, "completion_tokens": 2}, {"prompt_tokens": -1}]),
    }
)


@settings(deadline=None)
@given(st.lists(chat_chunks, max_size=6), st.sampled_from(["gpt-4o-2024", None]), st.booleans())
def test_a_chat_stream_read_item_by_item_equals_reading_each_in_full(
    chunks: list[dict[str, Any]], model: str | None, sdk_objects: bool
) -> None:
    """The stream reader skips what a chunk repeats (its model and id, once known) and nothing else."""
    from openai.types.chat import ChatCompletionChunk

    from otel_analytics.usage import read_stream_item

    stream: list[Any] = [
        {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model, **chunk}
        for chunk in chunks
    ]
    if sdk_objects:  # the SDK's own pydantic chunks, as a decorated generator of them yields
        stream = [ChatCompletionChunk.construct(**chunk) for chunk in stream]
    full, item_by_item = Usage(), Usage()
    for chunk in stream:
        read_response(chunk, full)
        read_stream_item(chunk, item_by_item)
    assert item_by_item == full


def test_the_stream_reader_reads_in_full_what_it_cannot_skip() -> None:
    from openai.types.chat import ChatCompletionChunk

    from otel_analytics.usage import read_stream_item

    usage = Usage(response_model="gpt-4o")
    # A chunk with keys its class does not declare (pydantic's extra): read in full.
    extra = ChatCompletionChunk.construct(id="c", choices=[], model="gpt-4o", object="chat.completion.chunk")
    extra.__pydantic_extra__ = {"stop_reason": "end_turn"}
    read_stream_item(extra, usage)
    # Anthropic-shaped events (they carry a type) and Responses events are never skipped.
    read_stream_item(
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 3}}, usage
    )
    read_stream_item(
        {"type": "response.completed", "response": {"usage": {"input_tokens": 4, "output_tokens": 5}}}, usage
    )
    assert usage.finish_reasons == ["end_turn", "max_tokens"]
    assert (usage.input_tokens, usage.output_tokens) == (4, 5)
