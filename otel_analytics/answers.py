"""Incremental, bounded reading of answers (response bodies) for model and usage.

The middleware and the provider-call capture forward every chunk first and only then hand it
here. Nothing here can change what the client receives, and every inspector stops looking (never
failing) past its byte cap.

- JSON (``application/json``): the body is kept up to the cap and parsed once at the end.
- SSE (``text/event-stream``): complete lines are scanned with a cheap byte pre-filter and only
  the events that can carry something we need (``"usage"``, the first ``"model"``, a finish
  reason) are decoded, so a 20-chunk stream costs one or two parses.
- gzip/deflate bodies are decompressed within the same cap, and brotli (``br``) ones when the
  ``brotli`` package is installed (as httpx itself needs it to read them); other encodings are
  not inspected.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from ._json import loads
from .usage import Usage, read_response
from .usage_json import read_json

DEFAULT_CAP = 1 << 20
BATCH = 32 * 1024
"""Bytes of a stream kept (as the chunks themselves) before they are searched together."""
_USAGE = b'"usage"'
# After a "usage" whose value is null, as the two common encoders write it (compact, and Python's
# json.dumps), the next usage worth reading is an object: searched for in C, past every null
# between, spelled as the null was, else (a backend that passes OpenAI's chunks on as they came
# and writes the last one itself) as the other encoder spells it.
_NEXT_AFTER_NULL = ((b":null", b'"usage":{', b'"usage": {'), (b": null", b'"usage": {', b'"usage":{'))


def _loads(raw: bytes | bytearray) -> Any:
    try:
        return loads(raw)
    except (ValueError, RecursionError):
        return None


def _feed_each(inspector: Any, chunks: list[bytes]) -> None:
    """``feed_many`` of the inspectors that read chunk by chunk."""
    for chunk in chunks:
        inspector.feed(chunk)


class JsonInspector:
    """Keeps the body (within the cap) and reads it once at the end; one chunk is not copied.

    ``document``: the whole document is wanted too (a session start's answer carries its id);
    otherwise only what usage needs is decoded (:mod:`~otel_analytics.usage_json`)."""

    __slots__ = ("_body", "_cap", "_document", "_first", "_overflow", "_size")

    def __init__(self, cap: int, document: bool = False) -> None:
        self._document = document
        self._first: bytes | None = None
        self._body: bytearray | None = None
        self._size = 0
        self._cap = cap
        self._overflow = False

    def feed(self, chunk: bytes) -> None:
        if self._overflow:
            return
        self._size += len(chunk)
        if self._size > self._cap:
            self._overflow = True
            self._first = self._body = None
            return
        if self._first is None and self._body is None:
            self._first = chunk
            return
        if self._body is None:
            self._body = bytearray(self._first or b"")
            self._first = None
        self._body += chunk

    feed_many = _feed_each

    def result(self) -> tuple[Usage | None, Any]:
        """Usage (or ``None``) and the parsed document (for session ids in a session start)."""
        raw = self._first if self._first is not None else self._body
        if self._overflow or not raw:
            return None, None
        usage = Usage()
        if not self._document:
            return (usage if read_json(raw, usage) else None), None
        document = _loads(raw)
        return (usage if type(document) is dict and read_response(document, usage) else None), document


class SseInspector:
    """Reads SSE events in batches; decodes only the one or two events that matter.

    A chunk is only kept (a reference, no copy) until about :data:`BATCH` bytes have passed; then
    the batch is joined and searched in C for ``"usage"``, and the last event with data is noted.
    Per chunk that is an append and a sum, where looking at every chunk as it passes cost ~4k
    instructions (the search, slices, compares): most of what the middleware added per chunk.
    The event carrying ``usage`` (OpenAI's last chunk with ``stream_options.include_usage``;
    Anthropic's ``message_start`` and ``message_delta``) is decoded and carries the model too. The
    finish reason sits in the event just before OpenAI's usage chunk, or in the last event of a
    stream without usage: that one event is decoded at the end. So a stream costs two parses,
    however long it is. A line longer than the cap is skipped, never held.

    OpenAI's ``"usage":null`` in every chunk but the last is stepped over in one search: past a
    null spelled ``:null`` or ``: null``, the next usage read is an object spelled ``"usage":{``
    or ``"usage": {`` (the same way first). Nulls in other spacings are stepped over one by one.
    What is not seen: after a ``:null`` or ``: null``, an object in a third spacing (no common
    encoder writes one).
    """

    __slots__ = ("_before_usage", "_cap", "_chunks", "_final", "_last", "_size", "_skipping", "_tail", "usage")

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._chunks: list[bytes] = []
        self._size = 0
        self._tail = b""  # a line not ended yet, carried into the next batch
        self._skipping = False  # inside a line longer than the cap: dropped up to its end
        self._last: bytes | None = None  # the last data line of the batches before the last
        self._final = b""  # the last batch
        # Where the first usage event is: (its batch, its offset, _last then).
        self._before_usage: tuple[bytes, int, bytes | None] | None = None
        self.usage = Usage()

    def feed(self, chunk: bytes) -> None:
        self.feed_many((chunk,))

    def feed_many(self, chunks: Sequence[bytes]) -> None:
        """Several chunks at once (the middleware hands them over in groups: a call per group)."""
        self._chunks += chunks
        self._size += sum(map(len, chunks))
        if self._size >= BATCH:
            self._read_batch(final=False)

    def _read_batch(self, *, final: bool) -> None:
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        if self._skipping:
            newline = data.find(b"\n")
            if newline < 0:
                return
            data = data[newline + 1 :]
            self._skipping = False
        if self._tail:
            data = self._tail + data
            self._tail = b""
        if not final:
            end = data.rfind(b"\n") + 1
            if end < len(data):
                tail = data[end:]
                if len(tail) > self._cap:
                    self._skipping = True  # an enormous line: ignore it up to its end
                else:
                    self._tail = tail
                data = data[:end]
        if data:
            self._look(data, final=final)

    def _look(self, data: bytes, *, final: bool) -> None:
        """Decode the lines of complete events that carry ``"usage"``; note where the last data
        event is (found only if the end needs it: a stream's last batch is usually its only one)."""
        at = data.find(_USAGE)
        while at >= 0:
            after = at + len(_USAGE)
            for null, same, other in _NEXT_AFTER_NULL:
                if data.startswith(null, after):
                    # OpenAI's "usage": null of every chunk but the last: one search finds the
                    # usage object, where a step per null cost ~3k instructions a chunk.
                    at = data.find(same, after)
                    if at < 0:
                        at = data.find(other, after)
                    break
            else:
                if _null_follows(data, after):  # null, in another spacing
                    at = data.find(_USAGE, after)
                    continue
            if at < 0:
                break
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            end = len(data) if end < 0 else end
            if data[start : start + 5] == b"data:":
                if self._before_usage is None:
                    self._before_usage = (data, start, self._last)
                self._read_event(data[start + 5 : end])
            at = data.find(_USAGE, end)
        if final:
            self._final = data
        else:
            self._last = _last_data_line(data, len(data)) or self._last

    def _read_event(self, raw: bytes) -> None:
        read_json(raw, self.usage)

    def result(self) -> tuple[Usage | None, Any]:
        self._read_batch(final=True)
        usage = self.usage
        if not usage.finish_reasons or usage.response_model is None:
            # The event that carries them: the one before the first usage event, else the last.
            if usage.reported and self._before_usage is not None:
                data, end, earlier = self._before_usage
            else:
                data, end, earlier = self._final, len(self._final), self._last
            line = _last_data_line(data, end) or earlier
            if line is not None:
                self._read_event(line[5:])
        return usage, None


def _null_follows(data: bytes, at: int) -> bool:
    """Whether the ``"usage"`` that ends at ``at`` is a key whose value is ``null``: an OpenAI stream
    asked for usage carries ``"usage": null`` in every chunk but the last, and decoding each of
    them would cost a parse per chunk where the stream needs two."""
    rest = data[at : at + 32].lstrip()
    return rest[:1] == b":" and rest[1:].lstrip()[:4] == b"null"


def _last_data_line(data: bytes, end: int) -> bytes | None:
    """The last ``data:`` line (not ``[DONE]``) that ends before ``end``, without its newline (a
    carriage return before it stays: JSON reads it as white space)."""
    while True:
        at = data.rfind(b"\ndata:", 0, end) + 1  # a line start, or 0: none after the first line
        if at == 0 and (end < 5 or data[:5] != b"data:"):
            return None
        line_end = data.find(b"\n", at, end)
        line = data[at : line_end if line_end >= 0 else end]
        if line[:12] != b"data: [DONE]":
            return line
        if at == 0:
            return None
        end = at - 1


class Decompressing:
    """gzip/deflate (or brotli) in front of another inspector, within the same output cap."""

    __slots__ = ("_brotli", "_inner", "_left", "_zlib")

    def __init__(self, inner: JsonInspector | SseInspector, cap: int, brotli: Any = None) -> None:
        self._inner = inner
        self._brotli = brotli  # a brotli.Decompressor, for br
        self._zlib: Any = None if brotli is not None else zlib.decompressobj(wbits=47)  # gzip or zlib
        self._left = cap

    def feed(self, chunk: bytes) -> None:
        try:
            if self._brotli is not None:
                out = self._brotli.process(chunk, output_buffer_limit=self._left + 1)
            elif self._zlib is not None:
                out = self._zlib.decompress(chunk, self._left + 1)
            else:
                return
        except Exception:  # zlib.error, brotli.error: not what it says it is; stop looking
            self._zlib = self._brotli = None
            return
        self._left -= len(out)
        if self._left < 0:
            self._zlib = self._brotli = None  # past the cap: stop looking
            return
        if out:
            self._inner.feed(out)

    feed_many = _feed_each

    def result(self) -> tuple[Usage | None, Any]:
        return self._inner.result()


def _brotli_decompressor() -> Any:
    try:
        import brotli
    except ImportError:
        return None
    return brotli.Decompressor()


Inspector = JsonInspector | SseInspector | Decompressing


_media_kinds: dict[bytes, type[JsonInspector] | type[SseInspector] | None] = {}


def _kind_of(content_type: bytes) -> type[JsonInspector] | type[SseInspector] | None:
    """The inspector class for a Content-Type, remembered (an app sends a handful of them)."""
    try:
        return _media_kinds[content_type]
    except KeyError:
        pass
    media = content_type.split(b";", 1)[0].strip().lower()
    kind: type[JsonInspector] | type[SseInspector] | None = None
    if media == b"text/event-stream":
        kind = SseInspector
    elif media == b"application/json" or media.endswith(b"+json"):
        kind = JsonInspector
    if len(_media_kinds) < 256:  # bounded: the header comes from the app, not from clients
        _media_kinds[content_type] = kind
    return kind


def inspector_for(
    content_type: bytes, content_encoding: bytes, cap: int = DEFAULT_CAP, *, document: bool = False
) -> Inspector | None:
    """An inspector for a response, or ``None`` when nothing in it can be read. ``document``: a
    JSON answer's whole document is wanted too (see :class:`JsonInspector`)."""
    kind = _kind_of(content_type)
    if kind is None:
        return None
    inner = JsonInspector(cap, document) if kind is JsonInspector else SseInspector(cap)
    if not content_encoding:
        return inner
    encoding = content_encoding.strip().lower()
    if not encoding or encoding == b"identity":
        return inner
    if encoding in (b"gzip", b"deflate", b"x-gzip"):
        return Decompressing(inner, cap)
    if encoding == b"br":
        decompressor = _brotli_decompressor()
        return Decompressing(inner, cap, decompressor) if decompressor is not None else None
    return None
