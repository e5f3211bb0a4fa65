"""Moves SQLite's WAL checkpoints off the write path.

By default the commit that fills the write-ahead log past 1,000 pages copies it into the database
and syncs it, inside the request that happened to commit: on this kind of machine that was 40 %
of the batch route's time. Here a thread with its own connection runs a passive checkpoint (it
never blocks the writer) twice a second, while SQLite releases the GIL for the I/O, so the work
lands on another core. The writer keeps a far larger automatic checkpoint as a backstop, should
this thread ever stop.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

INTERVAL_S = 0.5
BACKSTOP_PAGES = 16384  # 64 MiB of WAL with 4 KiB pages

_logger = logging.getLogger("otel_analytics.tracker")


class Checkpointer:
    def __init__(self, path: str, interval_s: float = INTERVAL_S) -> None:
        self._path = path
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tracker-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error:
            _logger.exception("tracker: no checkpoint thread; SQLite checkpoints on commit instead")
            return
        try:
            db.execute("PRAGMA busy_timeout=1000")
            while not self._stop.wait(self._interval_s):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # busy, or the file went away: try again next time
                    _logger.debug("tracker: checkpoint skipped: %s", exc)
        finally:
            db.close()
