"""Interaction writes that arrive together are committed together.

A commit writes every page the transaction touched to the WAL: with a batch of 100 interactions
that is some 250 pages of indexes, most of them the same pages the next batch touches. Under
load, batches that arrived while the previous transaction ran wait in the same event-loop turn;
writing them in one transaction writes those pages once. Nothing waits on purpose: a lone
request is written in the next turn of the loop.

Each request still gets its own answer: if a grouped transaction fails, every batch in it is
written again on its own, so one bad batch never fails the others.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .store import Store

Items = list[tuple[dict[str, Any], "str | None"]]
MAX_GROUP_ITEMS = 2000


class GroupCommit:
    def __init__(self, store: Store, max_items: int = MAX_GROUP_ITEMS) -> None:
        self._store = store
        self._max_items = max_items
        self._pending: list[tuple[Items, asyncio.Future[list[str]]]] = []
        self._scheduled = False

    async def add(self, items: Items) -> list[str]:
        """Store ``items`` (all or nothing) with whatever else arrived this turn; their ids."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[str]] = loop.create_future()
        self._pending.append((items, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._write)
        return await future

    def _write(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        try:
            self._write_groups(pending)
        except Exception as exc:  # a loop callback must not leave a request waiting forever
            for _, future in pending:
                if not future.done():
                    future.set_exception(exc)

    def _write_groups(self, pending: list[tuple[Items, asyncio.Future[list[str]]]]) -> None:
        group: list[tuple[Items, asyncio.Future[list[str]]]] = []
        size = 0
        for entry in pending:
            if group and size + len(entry[0]) > self._max_items:
                self._commit(group)
                group, size = [], 0
            group.append(entry)
            size += len(entry[0])
        if group:
            self._commit(group)

    def _commit(self, group: list[tuple[Items, asyncio.Future[list[str]]]]) -> None:
        if len(group) == 1:
            self._alone(*group[0])
            return
        try:
            ids = self._store.add_interactions([item for items, _ in group for item in items])
        except Exception:
            for items, future in group:  # isolate the failure: each batch on its own
                self._alone(items, future)
            return
        start = 0
        for items, future in group:
            if not future.done():
                future.set_result(ids[start : start + len(items)])
            start += len(items)

    def _alone(self, items: Items, future: asyncio.Future[list[str]]) -> None:
        try:
            ids = self._store.add_interactions(items)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(ids)
