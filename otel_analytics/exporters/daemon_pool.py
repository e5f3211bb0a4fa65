"""A small pool of daemon threads for the tracker exporter's concurrent requests.

Not ``concurrent.futures.ThreadPoolExecutor``: at interpreter exit, before any atexit callback
(and so before the flush at exit, which is bounded), it waits for every job its threads are
running. A request stuck on a hung tracker, retrying within its budget, then held the app's
exit for the whole budget (a minute, where the flush timeout said two seconds). Daemon threads
are not waited for: a job still running when the bounded flush gives up dies with the process.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class DaemonPool:
    """Runs submitted calls on up to ``size`` daemon threads, started as work needs them."""

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # a release per thread waiting for a job
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopped = False

    def submit(self, call: Callable[[], T]) -> Future[T]:
        """Queue ``call``; raises ``RuntimeError`` once the pool is stopped, or when a thread is
        needed and none can be started (Python 3.12+ at interpreter exit)."""
        future: Future[T] = Future()
        with self._lock:
            if self._stopped:
                raise RuntimeError("the pool is stopped")
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._size:
                thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                thread.start()  # before the job is queued: a thread that can't start takes nothing
                self._threads.append(thread)
            self._jobs.put((future, call))
        return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, call = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as exc:  # handed to whoever waits on the future
                    future.set_exception(exc)
            self._idle.release()

    def stop(self) -> None:
        """Take no more work, cancel what waits, and let the threads end after their current job."""
        with self._lock:
            self._stopped = True
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job[0].cancel()
            for _ in self._threads:
                self._jobs.put(None)
