"""The local tracker's SQLite store: versioned migrations, transactional writes, the read queries.

One connection in WAL mode, serialised by a lock (SQLite has one writer anyway). Every write that
touches two tables (an interaction and its session's totals) is one transaction, and interactions
are stored once per idempotency key, so a retried request is never counted twice.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from .._json import dumps
from ..ids import session_trace_id
from ..pricing import Price, PriceBook, cost_of, cost_value
from ..usage import Usage
from .checkpoint import BACKSTOP_PAGES, Checkpointer
from .rollups import Rollups

_MIGRATIONS = "otel_analytics.tracker.migrations"
_SORTS = {
    "start_time_desc": "start_time DESC, id",
    "start_time_asc": "start_time ASC, id",
    "total_cost_desc": "total_cost_mc DESC, start_time DESC, id",
    "total_cost_asc": "total_cost_mc ASC, start_time DESC, id",
}


def _count_session(db: sqlite3.Connection, start_time: str, user_id: str) -> None:
    """One more session started that day by that user (the dashboard's counts read these)."""
    db.execute(
        "INSERT INTO usage_user_daily (day, user_id, sessions) VALUES (?, ?, 1) "
        "ON CONFLICT (user_id, day) DO UPDATE SET sessions = sessions + 1",
        (start_time[:10], user_id),
    )
    db.execute(
        "INSERT INTO sessions_daily (day, sessions) VALUES (?, 1) "
        "ON CONFLICT (day) DO UPDATE SET sessions = sessions + 1",
        (start_time[:10],),
    )


def _now() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _minutes_between(start: str, end: str | None) -> float | None:
    if end is None:
        return None
    delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return round(delta.total_seconds() / 60, 2)


_ids = itertools.count()
_random = random.Random()
os.register_at_fork(after_in_child=_random.seed)


def _interaction_id() -> str:
    """Time-ordered ids (like UUIDv7): new rows append to the primary key's B-tree instead of
    landing at random places in it, which keeps batch ingest fast as the table grows. The counter
    keeps one process's ids apart; the random part (a private generator, reseeded in forked
    workers: no system call per row) keeps processes apart."""
    return f"int_{time.time_ns():016x}{next(_ids) & 0xFFFFFF:06x}{_random.getrandbits(24):06x}"


@functools.lru_cache(maxsize=4096)
def _trace_hex(session_id: str) -> str:
    """A session's trace id, as stored (remembered: a session's batches keep coming)."""
    return f"{session_trace_id(session_id):032x}"


@dataclass
class _Totals:
    """What a batch adds to one session."""

    user_id: str
    first: str
    count: int = 0
    cost_mc: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    last: str = ""


class Store:
    def __init__(self, path: str, prices: PriceBook | None = None) -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._prices = prices or PriceBook()
        self._price_cache: dict[tuple[str, str | None], Price | None] = {}

        self._known_sessions: set[str] = set()
        self.generation = 0
        """Counts this store's committed writes: the dashboard's pages poll it to refresh."""
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # Every write creates an interaction's session in the same transaction first, so the
            # foreign key always holds (the tests run PRAGMA foreign_key_check); SQLite's check
            # on every row cost a third of the ingest rate.
            self._db.execute("PRAGMA foreign_keys=OFF")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA cache_size=-32768")  # 32 MiB of pages
            self._db.execute("PRAGMA temp_store=MEMORY")
            self._db.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
            self._migrate()
        self._checkpointer = Checkpointer(path)
        self._checkpointer.start()

    def close(self) -> None:
        self._checkpointer.stop()
        with self._lock:
            self._db.close()  # the last connection to close checkpoints what is left

    # --- schema -----------------------------------------------------------------------------------
    def _migrate(self) -> None:
        """Apply ``migrations/NNNN_*.sql`` above ``PRAGMA user_version``, each in a transaction."""
        current = self._db.execute("PRAGMA user_version").fetchone()[0]
        files = sorted(
            (f for f in resources.files(_MIGRATIONS).iterdir() if f.name.endswith(".sql")), key=lambda f: f.name
        )
        for file in files:
            version = int(file.name.split("_", 1)[0])
            if version <= current:
                continue
            statements = _statements(file.read_text(encoding="utf-8"))
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {version}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self.generation += 1

    # --- writes -----------------------------------------------------------------------------------
    def start_session(self, body: dict[str, Any]) -> bool:
        """Create the session; ``False`` (and nothing changed) when it exists."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO sessions (id, user_id, start_time, metadata, trace_id) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                (
                    body["session_id"],
                    body["user_id"],
                    body["start_time"],
                    dumps(body["metadata"]).decode(),
                    _trace_hex(body["session_id"]),
                ),
            )
            if cursor.rowcount != 1:
                return False
            _count_session(db, body["start_time"], body["user_id"])
            return True

    def end_session(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Set the end time and recompute the totals; ``None`` for an unknown session."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT COUNT(*) AS n, COALESCE(SUM(total_cost_mc), 0) AS mc, COALESCE(SUM(prompt_tokens), 0) AS p, "
                "COALESCE(SUM(completion_tokens), 0) AS c FROM interactions WHERE session_id = ?",
                (body["session_id"],),
            ).fetchone()
            cursor = db.execute(
                "UPDATE sessions SET end_time = MAX(?, start_time), total_interactions = ?, total_cost_mc = ?, "
                "prompt_tokens = ?, completion_tokens = ?, updated_at = ? WHERE id = ?",
                (body["end_time"], row["n"], row["mc"], row["p"], row["c"], _now(), body["session_id"]),
            )
            if cursor.rowcount == 0:
                return None
            return {
                "session_id": body["session_id"],
                "total_interactions": row["n"],
                "total_cost": cost_value(row["mc"]),
            }

    def add_interactions(self, items: Sequence[tuple[dict[str, Any], str | None]]) -> list[str]:
        """Store interactions (all or nothing); returns their ids, existing ones for repeated keys."""
        priced = [(self._priced(body), key) for body, key in items]
        with self._transaction() as db:
            ids: list[str] = []
            keys = [key for _, key in priced if key]
            existing: dict[str, str] = {}
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for row in db.execute(
                    f"SELECT idempotency_key, id FROM interactions WHERE idempotency_key IN ({marks})", chunk
                ):
                    existing[row[0]] = row[1]
            rows = []
            totals: dict[str, _Totals] = {}
            rollups = Rollups()
            # One clock reading per transaction: the column's strftime() default ran once per row.
            now = _now()
            for body, key in priced:
                if key is not None and key in existing:
                    ids.append(existing[key])
                    continue
                interaction_id = _interaction_id()
                if key is not None:
                    existing[key] = interaction_id
                ids.append(interaction_id)
                costs = body["costs"]
                total = sum(costs.values())
                rows.append(
                    (
                        interaction_id,
                        key,
                        body["session_id"],
                        body["user_id"],
                        body["timestamp"],
                        body["type"],
                        body["status"],
                        body["model_name"],
                        body["prompt_tokens"],
                        body["completion_tokens"],
                        body["db_read_ops"],
                        body["db_write_ops"],
                        body["api_call_count"],
                        body["duration_ms"],
                        costs["ai_tokens_cost_mc"],
                        costs["db_ops_cost_mc"],
                        costs["api_calls_cost_mc"],
                        costs["compute_time_cost_mc"],
                        total,
                        dumps(body["metadata"]).decode(),
                        now,
                    )
                )
                entry = totals.setdefault(body["session_id"], _Totals(body["user_id"], body["timestamp"]))
                entry.count += 1
                entry.cost_mc += total
                entry.prompt_tokens += body["prompt_tokens"] or 0
                entry.completion_tokens += body["completion_tokens"] or 0
                entry.first = min(entry.first, body["timestamp"])
                entry.last = max(entry.last, body["timestamp"])
                rollups.add(body, total)
            # An interaction of a session never started creates it (the deployed worker would refuse).
            # Sessions are never deleted: one known to exist needs no statement.
            known = self._known_sessions
            for sid, t in totals.items():
                if (
                    sid not in known
                    and db.execute(
                        "INSERT INTO sessions (id, user_id, start_time, trace_id) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (id) DO NOTHING",
                        (sid, t.user_id, t.first, _trace_hex(sid)),
                    ).rowcount
                ):
                    _count_session(db, t.first, t.user_id)
            db.executemany(
                "INSERT INTO interactions (id, idempotency_key, session_id, user_id, timestamp, type, status, "
                "model_name, prompt_tokens, completion_tokens, db_read_ops, db_write_ops, api_call_count, "
                "duration_ms, ai_tokens_cost_mc, db_ops_cost_mc, api_calls_cost_mc, compute_time_cost_mc, "
                "total_cost_mc, metadata, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.executemany(
                "UPDATE sessions SET total_interactions = total_interactions + ?, "
                "total_cost_mc = total_cost_mc + ?, prompt_tokens = prompt_tokens + ?, "
                "completion_tokens = completion_tokens + ?, last_activity = MAX(COALESCE(last_activity, ''), ?), "
                "updated_at = ? WHERE id = ?",
                [
                    (t.count, t.cost_mc, t.prompt_tokens, t.completion_tokens, t.last, now, sid)
                    for sid, t in totals.items()
                ],
            )
            rollups.write(db)
        self._remember_sessions(totals)
        return ids

    def _remember_sessions(self, session_ids: Iterable[str]) -> None:
        """Sessions known to exist (committed), bounded: forgetting one only costs a statement."""
        known = self._known_sessions
        if len(known) > 65536:
            known.clear()
        known.update(session_ids)

    # --- pricing ------------------------------------------------------------------------------------
    def _priced(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body with ``costs`` filled in: the client's if it sent them, else priced here."""
        if body["costs"] is not None:
            return body
        costs = {
            "ai_tokens_cost_mc": 0,
            "db_ops_cost_mc": 0,
            "api_calls_cost_mc": 0,
            "compute_time_cost_mc": 0,
        }
        if body["type"] == "chat" and (body["prompt_tokens"] is not None or body["completion_tokens"] is not None):
            metadata = body["metadata"]
            provider = metadata.get("provider") if isinstance(metadata.get("provider"), str) else None
            price = self.price(body["model_name"], provider)
            if price is None:
                body = {**body, "metadata": {**metadata, "pricing": "unknown_model"}}
            else:
                usage = Usage(
                    input_tokens=body["prompt_tokens"],
                    output_tokens=body["completion_tokens"],
                    cache_read_tokens=_int(metadata.get("cache_read_tokens")),
                    cache_write_tokens=_int(metadata.get("cache_write_tokens")),
                )
                cost = cost_of(usage, price)
                costs["ai_tokens_cost_mc"] = cost.micro_cents if cost is not None else 0
                body = {**body, "metadata": {**metadata, "pricing_version": price.version}}
        return {**body, "costs": costs}

    def warm_prices(self) -> None:
        """Load the price snapshot (a server calls this at start-up)."""
        self._prices.warm()

    def price(self, model: str, provider: str | None = None) -> Price | None:
        """A model's price: a custom row of the ``pricing`` table if one is active, else the price
        book's, the client package's own (genai-prices with its tiers, and the price file), so the
        tracker and the client price an interaction alike to the micro-cent.

        The book's linear prices are written to the table (``source`` = where they came from) for
        whoever reads it; a row with another source is a price set by hand, and wins. Tiered prices
        are not linear and are not in the table's shape: their rows show the base tier only, and
        the book prices them.
        """
        key = (model, provider)
        if key in self._price_cache:
            return self._price_cache[key]
        with self._lock:
            rows = self._db.execute(
                "SELECT provider, token_kind, usd_per_million, source FROM pricing WHERE model = ? AND active = 1",
                (model,),
            ).fetchall()
        # The book wrote rows of any genai-prices version, and of the price file it was given.
        book = ("genai-prices ", self._prices.override_version or "genai-prices ")
        custom = [row for row in rows if not row["source"].startswith(book)]
        if custom:
            kinds = {row["token_kind"]: row["usd_per_million"] for row in custom}
            price: Price | None = Price(
                input=kinds.get("input", 0.0),
                output=kinds.get("output", 0.0),
                cache_read=kinds.get("cache_read"),
                cache_write=kinds.get("cache_write"),
                version="pricing table",
                provider=custom[0]["provider"],
            )
        else:
            price = self._prices.price(model, provider)
            if price is not None and not rows:
                self._seed(model, price)
        if len(self._price_cache) > 4096:
            self._price_cache.clear()
        self._price_cache[key] = price
        return price

    def _seed(self, model: str, price: Price) -> None:
        today = datetime.now(tz=UTC).date().isoformat()
        rows = [
            (price.provider or "unknown", model, kind, value, today, price.version)
            for kind, value in (
                ("input", price.input),
                ("output", price.output),
                ("cache_read", price.cache_read),
                ("cache_write", price.cache_write),
            )
            if value is not None
        ]
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO pricing (provider, model, token_kind, usd_per_million, effective_date, source) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )

    # --- reads --------------------------------------------------------------------------------------
    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Rows of a read-only query (the dashboard's), under the store's lock."""
        return self._query(sql, params)

    @staticmethod
    def session_summary(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": row["id"],
            "user_id": row["user_id"],
            "start_time": row["start_time"],
            "end_time": row["end_time"],
            "duration_minutes": _minutes_between(row["start_time"], row["end_time"]),
            "total_interactions": row["total_interactions"],
            "total_cost": cost_value(row["total_cost_mc"]),
        }

    def list_sessions(
        self,
        *,
        user_id: str | None,
        start_min: str | None,
        start_max: str | None,
        active_only: bool,
        limit: int,
        offset: int,
        sort: str,
    ) -> tuple[list[dict[str, Any]], int]:
        where, params = ["1 = 1"], []
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        if start_min is not None:
            where.append("start_time >= ?")
            params.append(start_min)
        if start_max is not None:
            where.append("start_time < ?")
            params.append(start_max)
        if active_only:
            where.append("end_time IS NULL")
        clause = " AND ".join(where)
        total = self._query(f"SELECT COUNT(*) FROM sessions WHERE {clause}", params)[0][0]
        rows = self._query(
            f"SELECT * FROM sessions WHERE {clause} ORDER BY {_SORTS[sort]} LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [self.session_summary(row) for row in rows], total

    def get_session(self, session_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM sessions WHERE id = ?", (session_id,))
        if not rows:
            return None
        row = rows[0]
        return {
            **self.session_summary(row),
            "metadata": json.loads(row["metadata"]),
            "trace_id": row["trace_id"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
        }

    def session_interactions(self, session_id: str, kind: str | None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM interactions WHERE session_id = ?"
        params: list[Any] = [session_id]
        if kind is not None:
            sql += " AND type = ?"
            params.append(kind)
        return [self.interaction(row) for row in self._query(sql + " ORDER BY timestamp, rowid", params)]

    @staticmethod
    def interaction(row: sqlite3.Row) -> dict[str, Any]:
        prompt, completion = row["prompt_tokens"], row["completion_tokens"]
        return {
            "id": row["id"],
            "session_id": row["session_id"],
            "user_id": row["user_id"],
            "timestamp": row["timestamp"],
            "type": row["type"],
            "status": row["status"],
            "model_name": row["model_name"],
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "token_count": None if prompt is None and completion is None else (prompt or 0) + (completion or 0),
            "db_read_ops": row["db_read_ops"],
            "db_write_ops": row["db_write_ops"],
            "api_call_count": row["api_call_count"],
            "duration_ms": row["duration_ms"],
            "total_cost": cost_value(row["total_cost_mc"]),
            "cost_breakdown": _breakdown(row),
            "metadata": json.loads(row["metadata"]),
        }

    def stats_summary(self, *, start_date: str | None, end_date: str | None, user_id: str | None) -> dict[str, Any]:
        where, params = _date_filter("timestamp", start_date, end_date, user_id)
        row = self._query(
            "SELECT COUNT(*) AS n, COUNT(DISTINCT session_id) AS sessions, COUNT(DISTINCT user_id) AS users, "
            "COALESCE(SUM(total_cost_mc), 0) AS total_cost_mc, "
            "COALESCE(SUM(ai_tokens_cost_mc), 0) AS ai_tokens_cost_mc, "
            "COALESCE(SUM(db_ops_cost_mc), 0) AS db_ops_cost_mc, "
            "COALESCE(SUM(api_calls_cost_mc), 0) AS api_calls_cost_mc, "
            f"COALESCE(SUM(compute_time_cost_mc), 0) AS compute_time_cost_mc FROM interactions WHERE {where}",
            params,
        )[0]
        swhere, sparams = _date_filter("start_time", start_date, end_date, user_id)
        sessions = self._query(f"SELECT COUNT(*) FROM sessions WHERE {swhere}", sparams)[0][0]
        users = self._query(f"SELECT COUNT(DISTINCT user_id) FROM sessions WHERE {swhere}", sparams)[0][0]
        return {
            "total_sessions": sessions,
            "total_interactions": row["n"],
            "unique_users": max(users, row["users"]),
            "total_cost": cost_value(row["total_cost_mc"]),
            "cost_breakdown": _breakdown(row),
            "avg_cost_per_session": cost_value(round(row["total_cost_mc"] / sessions) if sessions else 0),
            "avg_interactions_per_session": round(row["n"] / sessions, 2) if sessions else 0.0,
        }

    def stats_daily(self, *, start_date: str, end_date: str, user_id: str | None) -> list[dict[str, Any]]:
        where, params = _date_filter("timestamp", start_date, end_date, user_id)
        rows = self._query(
            "SELECT substr(timestamp, 1, 10) AS date, COUNT(DISTINCT session_id) AS sessions_count, "
            "COUNT(*) AS interactions_count, SUM(total_cost_mc) AS total_cost_mc, "
            "SUM(ai_tokens_cost_mc) AS ai_tokens_cost_mc, SUM(db_ops_cost_mc) AS db_ops_cost_mc, "
            "SUM(api_calls_cost_mc) AS api_calls_cost_mc, SUM(compute_time_cost_mc) AS compute_time_cost_mc "
            f"FROM interactions WHERE {where} GROUP BY date ORDER BY date",
            params,
        )
        return [
            {
                "date": row["date"],
                "sessions_count": row["sessions_count"],
                "interactions_count": row["interactions_count"],
                "total_cost": cost_value(row["total_cost_mc"]),
                "cost_breakdown": _breakdown(row),
            }
            for row in rows
        ]

    def stats_by_user(
        self, *, start_date: str | None, end_date: str | None, limit: int, user_id: str | None
    ) -> list[dict[str, Any]]:
        where, params = _date_filter("timestamp", start_date, end_date, user_id)
        rows = self._query(
            "SELECT user_id, COUNT(DISTINCT session_id) AS sessions_count, COUNT(*) AS interactions_count, "
            f"SUM(total_cost_mc) AS total_cost_mc FROM interactions WHERE {where} GROUP BY user_id "
            "ORDER BY total_cost_mc DESC, user_id LIMIT ?",
            [*params, limit],
        )
        return [
            {
                "user_id": row["user_id"],
                "sessions_count": row["sessions_count"],
                "interactions_count": row["interactions_count"],
                "total_cost": cost_value(row["total_cost_mc"]),
            }
            for row in rows
        ]

    def ping(self) -> None:
        self._query("SELECT 1")


def _date_filter(
    column: str, start_date: str | None, end_date: str | None, user_id: str | None
) -> tuple[str, list[Any]]:
    where, params = ["1 = 1"], []
    if start_date is not None:
        where.append(f"{column} >= ?")
        params.append(start_date)
    if end_date is not None:
        where.append(f"substr({column}, 1, 10) <= ?")
        params.append(end_date)
    if user_id is not None:
        where.append("user_id = ?")
        params.append(user_id)
    return " AND ".join(where), params


def _breakdown(row: Any) -> dict[str, Any]:
    return {
        "ai_tokens": cost_value(row["ai_tokens_cost_mc"] or 0),
        "db_ops": cost_value(row["db_ops_cost_mc"] or 0),
        "api_calls": cost_value(row["api_calls_cost_mc"] or 0),
        "compute_time": cost_value(row["compute_time_cost_mc"] or 0),
    }


def _int(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _statements(script: str) -> list[str]:
    """Split a SQL script into complete statements (``;`` inside strings or triggers is safe)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current)
            current = ""
    if current.strip() and not all(not ln.strip() or ln.strip().startswith("--") for ln in current.splitlines()):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {current[:80]!r}")
    return statements
