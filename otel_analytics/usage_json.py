"""Usage from the JSON text of a response or stream event, decoding only what is read.

The middleware reads every chat answer it passes on. Parsing one into dicts (orjson) and
reading them (:func:`~otel_analytics.usage.read_response`) cost ~20k instructions an OpenAI
chunk and ~40k a completion, half of it building values nobody reads (the content, the
fingerprint, ``created``). Text shaped as an OpenAI Chat Completions answer is decoded instead
into the few typed fields read here (msgspec skips the rest without building it): less than
half of that. Anything else (another shape, a value of another type, a key ``read_response``
reads otherwise) goes through ``read_response`` as before, so the result is always the same as
``read_response(json.loads(text))``: ``tests/test_usage_json.py`` holds that.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from ._json import loads
from ._ranges import MAX_COUNT
from .usage import Usage, read_response

# A valid token count; anything else (a float, a string, out of range) is a ValidationError, and the
# text is read the general way, which drops it and flags the usage invalid.
_Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
# The structs below are gc=False: decoded JSON holds no cycles, and untracked objects cost less to
# make and nothing to the collector.


class _PromptDetails(msgspec.Struct, gc=False):
    cached_tokens: _Count | None = None


class _CompletionDetails(msgspec.Struct, gc=False):
    reasoning_tokens: _Count | None = None


class _Usage(msgspec.Struct, gc=False):
    prompt_tokens: _Count | None = None
    completion_tokens: _Count | None = None
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None


class _Choice(msgspec.Struct, gc=False):
    finish_reason: str | None = None


class _Chat(msgspec.Struct, gc=False):
    """An OpenAI chat completion or chunk: the keys ``read_response`` reads of it. ``type``,
    ``stop_reason``, ``delta`` and ``object`` are decoded only to see that they send the text
    the general way (another API's shape)."""

    id: Any = None
    model: Any = None
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    object: Any = None
    type: Any = None
    stop_reason: Any = None
    delta: Any = None


_decoder = msgspec.json.Decoder(_Chat)
_MAX_CHOICES = 64  # as read_response


def read_json(raw: bytes | bytearray, into: Usage) -> bool:
    """``read_response(json.loads(raw), into)`` for a JSON object, ``False`` for anything else."""
    try:
        chat = _decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        chat = None
    if chat is not None and _plain_chat(chat):
        return _read_chat(chat, into)
    try:
        document = loads(raw)
    except (ValueError, RecursionError):
        return False
    return type(document) is dict and read_response(document, into)


def _plain_chat(chat: _Chat) -> bool:
    """Whether ``read_response`` would read only the fields :func:`_read_chat` reads."""
    usage = chat.usage
    return (
        chat.type is None
        and chat.stop_reason is None
        and chat.delta is None
        and chat.object != "response"
        # A usage without the chat counts is read for other APIs' counts (input_tokens, ...).
        and (usage is None or usage.prompt_tokens is not None or usage.completion_tokens is not None)
    )


def _read_chat(chat: _Chat, into: Usage) -> bool:
    usage = chat.usage
    model = chat.model if type(chat.model) is str and chat.model else None
    reasons: list[str] = []
    if chat.choices:
        for choice in chat.choices[:_MAX_CHOICES]:
            reason = choice.finish_reason
            if reason and reason not in reasons:
                reasons.append(reason)
    if usage is None and model is None and not reasons:
        return False
    if usage is not None:
        if usage.prompt_tokens is not None:
            into.input_tokens = usage.prompt_tokens
        if usage.completion_tokens is not None:
            into.output_tokens = usage.completion_tokens
        details = usage.prompt_tokens_details
        if details is not None and details.cached_tokens is not None:
            into.cache_read_tokens = details.cached_tokens
        reasoning = usage.completion_tokens_details
        if reasoning is not None and reasoning.reasoning_tokens is not None:
            into.reasoning_tokens = reasoning.reasoning_tokens
    if model is not None:
        into.response_model = model
    if type(chat.id) is str and chat.id:
        into.response_id = chat.id
    known = into.finish_reasons
    for reason in reasons:
        if reason not in known:
            known.append(reason)
    return True
