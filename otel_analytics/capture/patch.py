"""The hook: ``Client.send`` and ``AsyncClient.send`` of httpx and of httpx2, wrapped.

Every SDK built on either (openai, anthropic, LiteLLM, LangChain's clients, any OpenAI-compatible
client) sends through ``send``, whatever transport its client was built with, so one hook covers
them all and every version; no SDK method is patched. A request that is not an LLM call (by host
and path, :mod:`.endpoints`) costs a few attribute reads and goes on untouched. For a call, the
response is returned as it came: a JSON body the client read is read again here; a streamed one
gets a wrapper around its byte stream that hands every chunk on first, unchanged, at once.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from time import monotonic_ns
from typing import Any

from opentelemetry import context as otel_context

from .. import runtime as _runtime
from .._guard import report_internal_error
from ..runtime import Runtime
from .call import CapturedCall, begin
from .endpoints import Endpoints

LIBRARIES = ("httpx", "httpx2")
_SUPPRESS = otel_context._SUPPRESS_INSTRUMENTATION_KEY
_lock = threading.Lock()
_originals: dict[str, tuple[Any, Any, Any]] = {}  # library -> (module, Client.send, AsyncClient.send)
_endpoints: tuple[object, Endpoints] | None = None


def install() -> tuple[str, ...]:
    """Wrap ``send`` in every library that is installed (none is required); idempotent. Returns
    the libraries hooked."""
    with _lock:
        for name in LIBRARIES:
            if name in _originals:
                continue
            try:
                library = importlib.import_module(name)
            except ImportError:
                continue
            client, async_client = library.Client, library.AsyncClient
            _originals[name] = (library, client.send, async_client.send)
            client.send = _sync_send(library, client.send)
            async_client.send = _async_send(library, async_client.send)
        return tuple(_originals)


def uninstall() -> None:
    """Put every ``send`` back as it was."""
    with _lock:
        for library, send, async_send in _originals.values():
            library.Client.send = send
            library.AsyncClient.send = async_send
        _originals.clear()


def installed() -> tuple[str, ...]:
    return tuple(_originals)


def _endpoints_of(runtime: Runtime) -> Endpoints:
    global _endpoints
    cached = _endpoints
    if cached is None or cached[0] is not runtime.settings:
        cached = _endpoints = (runtime.settings, Endpoints(runtime.settings.llm_hosts))
    return cached[1]


def _begin(request: Any) -> CapturedCall | None:
    """The call to record for ``request``, or ``None`` for one that passes untouched."""
    if otel_context.get_value(_SUPPRESS):  # an exporter's own request, or suppressed by the app
        return None
    runtime = _runtime.current()
    settings = runtime.settings
    if not settings.enabled or not settings.capture_llm_calls:
        return None
    try:
        url = request.url
        host, port = url.host, url.port
        endpoint = _endpoints_of(runtime).match(request.method, f"{host}:{port}" if port else host, url.path)
        if endpoint is None:
            return None
        try:
            content = request.content
        except Exception:  # a streamed request body, not read: no model to read from it
            content = None
        return begin(runtime, endpoint, content if isinstance(content, bytes) else None, host, port)
    except Exception as error:
        report_internal_error("capture.request", error)
        return None


def _answered(call: CapturedCall, response: Any, wrap: Callable[[Any, CapturedCall], Any]) -> None:
    try:
        content = getattr(response, "_content", None)  # read already (send(stream=False)): decoded
        if call.answered(response.status_code, response.headers.raw, content):
            response.stream = wrap(response.stream, call)
    except Exception as error:
        report_internal_error("capture.response", error)


def _guarded(work: Callable[[], None]) -> None:
    try:
        work()
    except Exception as error:
        report_internal_error("capture.stream", error)


class _Observing:
    """What both observed streams share: the call, the chunk handed on but not read yet, the end."""

    def __init__(self, inner: Any, call: CapturedCall) -> None:
        self._inner = inner
        self._call = call
        self._pending: bytes | None = None  # handed on; read when the caller asks for the next
        self._done = False

    def _end(self, how: str) -> None:
        if not self._done:
            self._done = True
            pending, self._pending = self._pending, None
            unread = self._call.unread
            if pending is not None and unread is not None:
                unread.append(pending)  # handed on, never asked past: read all the same
            _guarded(functools.partial(self._call.ended, how))

    def _fail(self, exc: BaseException) -> None:
        if not self._done:
            self._done = True
            _guarded(functools.partial(self._call.failed, exc))


def _sync_send(library: Any, original: Any) -> Any:
    base = library.SyncByteStream

    class ObservedStream(_Observing, base):  # type: ignore[misc,valid-type]
        """The response's byte stream, each chunk handed on first, then read."""

        def __iter__(self) -> Iterator[bytes]:
            call = self._call
            unread = call.unread
            ends = call.chunk_ends
            first = True
            try:
                for chunk in self._inner:
                    if ends is not None:
                        ends.append(monotonic_ns())
                    if first:
                        first = False
                        call.first_chunk()
                    self._pending = chunk
                    yield chunk  # handed on first, unchanged
                    self._pending = None
                    if unread is not None:
                        unread.append(chunk)
                        if len(unread) >= 32:
                            call.read()
            except GeneratorExit:
                self._end("closed")
                raise
            except BaseException as exc:
                self._fail(exc)
                raise
            self._end("completed")

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                self._end("closed")

    @functools.wraps(original)
    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        call = _begin(request)
        if call is None:
            return original(self, request, *args, **kwargs)
        try:
            with call.sending():
                response = original(self, request, *args, **kwargs)
        except BaseException as exc:
            _guarded(functools.partial(call.failed, exc))
            raise
        _answered(call, response, ObservedStream)
        return response

    return send


def _async_send(library: Any, original: Any) -> Any:
    base = library.AsyncByteStream

    class ObservedAsyncStream(_Observing, base):  # type: ignore[misc,valid-type]
        """The response's async byte stream, each chunk handed on first, then read."""

        async def __aiter__(self) -> AsyncIterator[bytes]:
            call = self._call
            unread = call.unread
            ends = call.chunk_ends
            first = True
            try:
                async for chunk in self._inner:
                    if ends is not None:
                        ends.append(monotonic_ns())
                    if first:
                        first = False
                        call.first_chunk()
                    self._pending = chunk
                    yield chunk  # handed on first, unchanged
                    self._pending = None
                    if unread is not None:
                        unread.append(chunk)
                        if len(unread) >= 32:
                            call.read()
            except GeneratorExit:
                self._end("closed")
                raise
            except BaseException as exc:
                self._fail(exc)
                raise
            self._end("completed")

        async def aclose(self) -> None:
            try:
                await self._inner.aclose()
            finally:
                self._end("closed")

    @functools.wraps(original)
    async def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        call = _begin(request)
        if call is None:
            return await original(self, request, *args, **kwargs)
        try:
            with call.sending():
                response = await original(self, request, *args, **kwargs)
        except BaseException as exc:
            _guarded(functools.partial(call.failed, exc))
            raise
        _answered(call, response, ObservedAsyncStream)
        return response

    return send
