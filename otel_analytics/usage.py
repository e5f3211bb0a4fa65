"""Token usage read from what LLM APIs return: OpenAI- and Anthropic-shaped, dicts or SDK objects.

Only integers from 0 to 2**53 (the tracker contract's range) are ever taken as token counts: a
string, a float, a bool, a negative or a larger number is dropped, so a malformed response can
never produce a wrong count, and the usage is flagged ``invalid`` (the other counts are kept). A
count that was not reported stays ``None``: unknown is never 0.

Shapes understood:

- OpenAI Chat Completions: ``usage.prompt_tokens`` (includes cached), ``completion_tokens``,
  ``prompt_tokens_details.cached_tokens``, ``completion_tokens_details.reasoning_tokens``;
  streaming chunks carry ``usage`` on the last chunk when ``stream_options.include_usage`` is set.
- OpenAI Responses: ``usage.input_tokens`` (includes cached), ``output_tokens``,
  ``input_tokens_details.cached_tokens``, ``output_tokens_details.reasoning_tokens``; streaming
  ``response.*`` lifecycle events carry the response so far (usage on ``response.completed``).
  Its finish reason is its ``incomplete_details.reason`` when incomplete, else its final
  ``status`` (``completed``, ``failed``, ``cancelled``).
- Anthropic Messages: ``usage.input_tokens`` (excludes cache), ``cache_read_input_tokens``,
  ``cache_creation_input_tokens``, ``output_tokens``; streaming ``message_start`` (model, input
  usage) and ``message_delta`` (output usage, stop reason).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._ranges import MAX_COUNT, count
from ._text import clean


@dataclass(slots=True)
class Usage:
    """What one interaction used and answered. ``None`` means "not reported"."""

    input_tokens: int | None = None
    """All input tokens, cached ones included (GenAI conventions)."""
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    response_model: str | None = None
    response_id: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    invalid: bool = False
    """A count was reported that is not one (out of range, or not an integer): it was dropped."""
    given_cost_mc: int | None = None
    """What the caller says the interaction cost, in micro-cents (``track_*``'s ``costs``, or
    cost parts set on a live interaction): recorded as its cost instead of a price from the table."""

    @property
    def reported(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None

    def merge(self, other: Usage) -> None:
        """Fold a later observation in: reported values win over unknown ones (a stream's events
        are folded by :func:`read_response`, without a ``Usage`` each)."""
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "response_model",
            "response_id",
            "given_cost_mc",
        ):
            value = getattr(other, name)
            if value is not None:
                setattr(self, name, value)
        for reason in other.finish_reasons:
            if reason not in self.finish_reasons:
                self.finish_reasons.append(reason)
        self.invalid = self.invalid or other.invalid


token_count = count
"""``value`` if it is a valid token count (an int from 0 to 2**53, not a bool), else ``None``."""


_SCALARS = (str, bytes, int, float, list, tuple)


_NOT_PYDANTIC = frozenset({"<not a pydantic model>"})
_fields: dict[type, frozenset[str]] = {}


def _fields_of(cls: type) -> frozenset[str]:
    """The fields a pydantic model class declares (``_NOT_PYDANTIC`` for other classes), remembered.

    An SDK's response and chunk objects are pydantic models, and asking one for an attribute it
    does not have costs ~7 µs (pydantic's ``__getattr__`` raises and is caught): a stream's chunk
    was read for several it lacks (``type``, ``stop_reason``, ``delta``), most of what a decorated
    stream cost a chunk. Asking the class what it has first costs a set lookup."""
    try:
        return _fields[cls]
    except KeyError:
        pass
    declared = getattr(cls, "__pydantic_fields__", None)
    found = frozenset(declared) if isinstance(declared, dict) else _NOT_PYDANTIC
    if len(_fields) < 1024:
        _fields[cls] = found
    return found


def _get(obj: Any, key: str) -> Any:
    if type(obj) is dict:  # the common cases first, before the (slow) ABC check
        return obj.get(key)
    if obj is None:
        return None
    fields = _fields_of(type(obj))
    if fields is not _NOT_PYDANTIC:
        if key in fields:
            return getattr(obj, key, None)
        extra = getattr(obj, "__pydantic_extra__", None)  # extra="allow": the answer's other keys
        return extra.get(key) if type(extra) is dict else None
    if isinstance(obj, Mapping):
        return obj.get(key)
    if isinstance(obj, _SCALARS):
        return None
    try:
        return getattr(obj, key, None)
    except Exception:  # a hostile __getattr__ must not break the caller
        return None


def _getter(obj: Any) -> Callable[[str], Any]:
    """``key -> value`` for ``obj``: a plain dict's own ``get`` (parsed JSON: every response the
    middleware reads); a pydantic model's (an SDK's response or chunk) own ``__dict__.get``, where
    its fields' values are (its extra keys, if any, looked up after); else :func:`_get`'s rules."""
    if type(obj) is dict:
        return obj.get
    if obj is not None and _fields_of(type(obj)) is not _NOT_PYDANTIC:
        values = getattr(obj, "__dict__", None)
        if type(values) is dict:
            extra = getattr(obj, "__pydantic_extra__", None)
            if not extra:
                return values.get
            return functools.partial(_field_or_extra, values, extra)
    return functools.partial(_get, obj)


def _field_or_extra(values: dict[str, Any], extra: Any, key: str) -> Any:
    found = values.get(key)
    return found if found is not None or type(extra) is not dict else extra.get(key)


_SEQUENCES = (list, tuple)  # a tuple, not ``list | tuple``: that union is built anew on every call
_ANTHROPIC = ("message", "message_delta")  # kinds whose input count leaves the cached part out
# OpenAI Responses stream events that carry the response object (its usage once it is over).
_RESPONSE_EVENTS = frozenset(
    {
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)


_NO_COUNTS = (None, None, None, None, None, False)


def read_response(response: Any, into: Usage) -> bool:
    """Fold what one response or stream event reports into ``into``: reported values win over
    unknown ones, as in :meth:`Usage.merge`; ``False`` (nothing folded) when it reports nothing useful.

    A stream's events are read this way: no ``Usage`` is built and merged per event.
    """
    get: Callable[[str], Any]
    if type(response) is dict:
        if not response:
            return False
        get = response.get
    elif response is None:
        return False
    else:
        get = _getter(response)
    kind = get("type")
    if kind == "message_start":  # Anthropic stream: the message, with input usage
        return read_response(get("message"), into)
    if type(kind) is str and kind in _RESPONSE_EVENTS:  # OpenAI Responses stream: usage at the end
        return read_response(get("response"), into)
    raw = get("usage")
    counts = _NO_COUNTS if raw is None else _read_usage(_getter(raw), anthropic=kind in _ANTHROPIC)
    input_tokens, output_tokens, cache_read, cache_write, reasoning, invalid = counts
    if invalid:
        into.invalid = True
    model = get("model")
    model = clean(model) if isinstance(model, str) and model else None
    reasons = _finish_reasons(get)
    if input_tokens is None and output_tokens is None and model is None and not reasons and not invalid:
        return False
    if input_tokens is not None:
        into.input_tokens = input_tokens
    if output_tokens is not None:
        into.output_tokens = output_tokens
    if cache_read is not None:
        into.cache_read_tokens = cache_read
    if cache_write is not None:
        into.cache_write_tokens = cache_write
    if reasoning is not None:
        into.reasoning_tokens = reasoning
    if model is not None:
        into.response_model = model
    if kind != "message_delta":
        response_id = get("id")
        if isinstance(response_id, str) and response_id:
            into.response_id = clean(response_id)
    known = into.finish_reasons
    for reason in reasons:
        if reason not in known:
            known.append(reason)
    return True


_CHAT_CHUNK_FIELDS = frozenset({"id", "choices", "model", "usage"})
_chat_chunk_classes: dict[type, bool] = {}


def _is_chat_chunk_class(cls: type) -> bool:
    """Whether a pydantic class is shaped as an OpenAI chat completion chunk, remembered."""
    try:
        return _chat_chunk_classes[cls]
    except KeyError:
        pass
    fields = _fields_of(cls)
    found = fields is not _NOT_PYDANTIC and fields >= _CHAT_CHUNK_FIELDS and "type" not in fields
    if len(_chat_chunk_classes) < 1024:
        _chat_chunk_classes[cls] = found
    return found


def read_stream_item(item: Any, into: Usage) -> None:
    """:func:`read_response` for one item of a stream, reading only what it can still add.

    Every chunk of an OpenAI chat stream repeats the model and id, and all but the last carry
    ``usage: null``: once the model is known, such a chunk can only add a finish reason, so only
    its choices are read (where a full read of every chunk cost several times more, most of what
    a decorated stream added a chunk). Anything else is read in full."""
    if into.response_model is not None:
        values: Any = None
        if type(item) is dict:
            if "choices" in item and "type" not in item:
                values = item
        elif item is not None and _is_chat_chunk_class(type(item)) and not getattr(item, "__pydantic_extra__", None):
            values = getattr(item, "__dict__", None)
        if type(values) is dict and values.get("usage") is None:
            choices = values.get("choices")
            if type(choices) is list:
                known = into.finish_reasons
                for choice in choices[:64]:
                    reason = choice.get("finish_reason") if type(choice) is dict else _get(choice, "finish_reason")
                    if isinstance(reason, str) and reason:
                        reason = clean(reason)
                        if reason not in known:
                            known.append(reason)
                return
    read_response(item, into)


Counts = tuple[int | None, int | None, int | None, int | None, int | None, bool]
"""input (cached included), output, cache read, cache write, reasoning; whether a count was dropped."""


def _dropped(raw: Any, taken: int | None) -> bool:
    """Whether a count was given (not ``None``, JSON's null) and not taken."""
    return raw is not None and taken is None


def _read_usage(get: Callable[[str], Any], *, anthropic: bool) -> Counts:
    # token_count() written out for the counts every response has: this runs on every response.
    raw_prompt = get("prompt_tokens")
    prompt = raw_prompt if type(raw_prompt) is int and 0 <= raw_prompt <= MAX_COUNT else None
    raw_completion = get("completion_tokens")
    completion = raw_completion if type(raw_completion) is int and 0 <= raw_completion <= MAX_COUNT else None
    if prompt is not None or completion is not None or raw_prompt is not None or raw_completion is not None:
        # OpenAI chat
        details = get("prompt_tokens_details")
        raw_cached = None if details is None else _get(details, "cached_tokens")
        details = get("completion_tokens_details")
        raw_reasoning = None if details is None else _get(details, "reasoning_tokens")
        cached, reasoning = token_count(raw_cached), token_count(raw_reasoning)
        invalid = (
            _dropped(raw_prompt, prompt)
            or _dropped(raw_completion, completion)
            or _dropped(raw_cached, cached)
            or _dropped(raw_reasoning, reasoning)
        )
        return prompt, completion, cached, None, reasoning, invalid
    raw_input, raw_output = get("input_tokens"), get("output_tokens")
    raw_read, raw_write = get("cache_read_input_tokens"), get("cache_creation_input_tokens")
    input_tokens, output_tokens = token_count(raw_input), token_count(raw_output)
    cache_read, cache_write = token_count(raw_read), token_count(raw_write)
    invalid = (
        _dropped(raw_input, input_tokens)
        or _dropped(raw_output, output_tokens)
        or _dropped(raw_read, cache_read)
        or _dropped(raw_write, cache_write)
    )
    if anthropic or cache_read is not None or cache_write is not None:
        # Anthropic reports input without the cached part; the conventions want all of it.
        if input_tokens is not None:
            input_tokens += (cache_read or 0) + (cache_write or 0)
            if input_tokens > MAX_COUNT:
                input_tokens, invalid = None, True
        return input_tokens, output_tokens, cache_read, cache_write, None, invalid
    # OpenAI Responses API: input already includes cached tokens
    raw_cached = _get(get("input_tokens_details"), "cached_tokens")
    raw_reasoning = _get(get("output_tokens_details"), "reasoning_tokens")
    cached, reasoning = token_count(raw_cached), token_count(raw_reasoning)
    invalid = invalid or _dropped(raw_cached, cached) or _dropped(raw_reasoning, reasoning)
    return input_tokens, output_tokens, cached, None, reasoning, invalid


def _finish_reasons(get: Callable[[str], Any]) -> list[str]:
    reasons: list[str] = []
    choices = get("choices")
    if type(choices) is list or isinstance(choices, _SEQUENCES):
        for choice in choices[:64]:
            reason = choice.get("finish_reason") if type(choice) is dict else _get(choice, "finish_reason")
            if isinstance(reason, str) and reason and reason not in reasons:
                reasons.append(reason)
    reason = get("stop_reason")
    if isinstance(reason, str) and reason and reason not in reasons:
        reasons.append(reason)
    delta = get("delta")
    if delta is not None:
        reason = delta.get("stop_reason") if type(delta) is dict else _get(delta, "stop_reason")
        if isinstance(reason, str) and reason and reason not in reasons:
            reasons.append(reason)
    if get("object") == "response":
        reason = _responses_reason(get)
        if reason is not None and reason not in reasons:
            reasons.append(reason)
    return [clean(reason) for reason in reasons] if reasons else reasons


_RESPONSES_OVER = frozenset({"completed", "failed", "cancelled"})


def _responses_reason(get: Callable[[str], Any]) -> str | None:
    """An OpenAI Responses object's finish reason, in its own words: why it is incomplete
    (``max_output_tokens``, ``content_filter``), or how it ended; nothing while it runs."""
    status = get("status")
    if status == "incomplete":
        reason = _get(get("incomplete_details"), "reason")
        return reason if isinstance(reason, str) and reason else "incomplete"
    return status if type(status) is str and status in _RESPONSES_OVER else None
