"""``oa.interaction(...)``: one interaction as a context manager or a decorator.

As a decorator it handles sync and async functions, generators and async generators. The span
ends when the work really ends: on return, on exhaustion of a stream, on early ``close()`` /
``aclose()``, on an exception (recorded, status error, re-raised unchanged) and on cancellation.
A generator's span is current only while its body runs: a sync generator's body runs in a
context of its own (copied from the consumer's at the first step, as a task's is), so what it
sets stays set from step to step and never leaks into the consumer; an async generator's span is
attached around each step, and the wrapper awaits the wrapped generator directly (no task per
``__anext__``), so ``asyncio.timeout`` and the current task are as without us.

When ``record_usage`` was not called, usage is read from the return value or the streamed chunks
if they are OpenAI- or Anthropic-shaped.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from contextvars import ContextVar, copy_context
from types import TracebackType
from typing import Any, TypeVar, cast

from opentelemetry.util.types import AttributeValue

from . import attributes as attrs
from . import runtime as _runtime
from ._ranges import count
from .context import resolve_session
from .recording import Recording

F = TypeVar("F", bound=Callable[..., Any])


class NoopRecording:
    """What ``with oa.interaction(...)`` gives when analytics is disabled: every call is free."""

    span = None
    usage_recorded = False

    def record_usage(self, **_: Any) -> None:
        pass

    def record_response(self, response: Any) -> None:
        pass

    def record_content(self, **_: Any) -> None:
        pass

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        pass


class interaction:
    """Record one interaction (``chat``, ``db``, ``api`` or ``cost-event``) as a span.

    Example::

        with oa.interaction("chat", model="gpt-4o") as it:
            reply = client.chat.completions.create(...)
            it.record_response(reply)

        @oa.interaction("db", name="messages.insert", write_ops=1)
        async def save(message): ...

    Args:
        type: the interaction type.
        model: the requested model (chat).
        provider: ``gen_ai.provider.name``; inferred from the model name when not given.
        operation: ``gen_ai.operation.name`` of a chat interaction (default ``chat``).
        name: a short low-cardinality name for db/api spans (``db messages.insert``).
        session_id, user_id: default to the session in context.
        read_ops, write_ops: database operations of a ``db`` interaction.
        call_count: external calls of an ``api`` interaction.
        metadata: free-form, recorded as a JSON string (secret-bearing keys redacted).
    """

    def __init__(
        self,
        type: str,
        *,
        model: str | None = None,
        provider: str | None = None,
        operation: str | None = None,
        name: str | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
        read_ops: int | None = None,
        write_ops: int | None = None,
        call_count: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if type not in attrs.INTERACTION_TYPES:
            raise ValueError(
                f"Invalid interaction type: {type!r}; accepted values: {', '.join(attrs.INTERACTION_TYPES)}."
            )
        self._type = type
        self._model = model
        self._provider = provider
        self._operation = operation
        self._name = name
        self._session_id = session_id
        self._user_id = user_id
        self._metadata = metadata
        extra: dict[str, AttributeValue] = {}
        for key, value, minimum in (
            (attrs.DB_READ_OPS, read_ops, 0),
            (attrs.DB_WRITE_OPS, write_ops, 0),
            (attrs.API_CALL_COUNT, call_count, 1),
        ):
            if value is not None:
                if count(value, minimum) is None:
                    raise ValueError(f"{key} must be an integer from {minimum} to 2**53, got {value!r:.80}.")
                extra[key] = value
        self._attributes = extra
        # A stack per context, so one interaction object can serve concurrent `with` blocks
        # (made here, not on first use: two threads entering at once must share one).
        self._active: ContextVar[tuple[tuple[Recording | NoopRecording, Any], ...]] = ContextVar(
            f"otel_analytics_interaction_{id(self)}", default=()
        )

    def _start(self) -> Recording | NoopRecording:
        runtime = _runtime.current()
        if not runtime.settings.enabled:
            return NoopRecording()
        return Recording(
            runtime,
            self._type,
            session=resolve_session(self._session_id, self._user_id),
            model=self._model,
            provider=self._provider,
            operation=self._operation,
            name=self._name,
            metadata=self._metadata,
            attributes=self._attributes,
        )

    # --- context manager ---------------------------------------------------------------------
    def __enter__(self) -> Recording | NoopRecording:
        recording = self._start()
        activation = recording.activated() if isinstance(recording, Recording) else None
        if activation is not None:
            activation.__enter__()
        self._active.set((*self._active.get(), (recording, activation)))
        return recording

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        *rest, (recording, activation) = self._active.get()
        self._active.set(tuple(rest))
        if activation is not None:
            activation.__exit__(exc_type, exc, tb)
        if isinstance(recording, Recording):
            recording.finish(exc)

    async def __aenter__(self) -> Recording | NoopRecording:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # --- decorator ------------------------------------------------------------------------------
    def __call__(self, func: F) -> F:
        if inspect.isasyncgenfunction(func):
            return cast(F, self._wrap_async_generator(func))
        if inspect.isgeneratorfunction(func):
            return cast(F, self._wrap_generator(func))
        if inspect.iscoroutinefunction(func):
            return cast(F, self._wrap_coroutine(func))
        return cast(F, self._wrap_function(func))

    def _wrap_function(self, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            recording = self._start()
            if not isinstance(recording, Recording):
                return func(*args, **kwargs)
            _capture_input(recording, kwargs)
            try:
                with recording.activated():
                    result = func(*args, **kwargs)
            except BaseException as exc:
                recording.finish(exc)
                raise
            recording.observe(result)
            recording.finish()
            return result

        return wrapper

    def _wrap_coroutine(self, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            recording = self._start()
            if not isinstance(recording, Recording):
                return await func(*args, **kwargs)
            _capture_input(recording, kwargs)
            try:
                with recording.activated():
                    result = await func(*args, **kwargs)
            except BaseException as exc:
                recording.finish(exc)
                raise
            recording.observe(result)
            recording.finish()
            return result

        return wrapper

    def _wrap_generator(self, func: Callable[..., Generator[Any, Any, Any]]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            recording = self._start()
            if not isinstance(recording, Recording):
                return (yield from func(*args, **kwargs))
            _capture_input(recording, kwargs)
            try:
                with recording.activated():
                    gen = func(*args, **kwargs)
                return (yield from _traced_generator(gen, recording))
            except BaseException as exc:
                recording.finish(exc)
                raise
            finally:
                recording.finish()

        return wrapper

    def _wrap_async_generator(self, func: Callable[..., AsyncGenerator[Any, Any]]) -> Callable[..., Any]:
        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            recording = self._start()
            if not isinstance(recording, Recording):
                async for item in func(*args, **kwargs):
                    yield item
                return
            _capture_input(recording, kwargs)
            agen = func(*args, **kwargs)
            to_send: Any = None
            pending: BaseException | None = None
            try:
                while True:
                    try:
                        with recording.activated():
                            item = await (agen.athrow(pending) if pending is not None else agen.asend(to_send))
                    except StopAsyncIteration:
                        break
                    pending = None
                    recording.chunk()
                    recording.observe(item)
                    try:
                        to_send = yield item
                    except GeneratorExit:
                        # The consumer closed us early: close the wrapped generator too, then end.
                        with recording.activated():
                            await agen.aclose()
                        recording.finish(outcome="closed")
                        raise
                    except BaseException as thrown:  # athrow(): deliver it to the wrapped generator
                        pending = thrown
            except BaseException as exc:
                recording.finish(exc)
                raise
            finally:
                recording.finish()

        return wrapper


def _traced_generator(gen: Generator[Any, Any, Any], recording: Recording) -> Generator[Any, Any, Any]:
    """``yield from gen`` with usage read from each item, every step run in one context of the
    generator's own (copied from the consumer's at the first step) where the span and session are
    current: as a task runs in its own, so what the body sets stays its own from step to step and
    never leaks into the consumer's, and a step costs one ``Context.run`` where attaching and
    detaching around each step cost several calls a chunk."""
    context = copy_context()
    context.run(recording.make_current)
    step = context.run
    chunk, observe = recording.chunk, recording.observe
    to_send: Any = None
    pending: BaseException | None = None
    while True:
        try:
            item = step(gen.throw, pending) if pending is not None else step(gen.send, to_send)
        except StopIteration as stop:
            return stop.value
        pending = None
        chunk()
        observe(item)
        try:
            to_send = yield item
        except GeneratorExit:
            step(gen.close)
            recording.finish(outcome="closed")
            raise
        except BaseException as thrown:
            pending = thrown


def _capture_input(recording: Recording, kwargs: Mapping[str, Any]) -> None:
    messages = kwargs.get("messages")
    if messages is not None:
        recording.record_content(input_messages=messages)
