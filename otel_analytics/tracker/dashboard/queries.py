"""What the dashboard's pages show, read from the store: plain data, rendered as HTML, CSV or JSON.

Every query reads indexes and the rolled-up tables of migration 0003 (never a scan of the
interactions), so a page costs the same at 10k sessions and at 100k. Money is in micro-cents.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..rollups import percentile
from ..store import Store

PAGE_SIZE = 50
USERS_LIMIT = 500
"""The users page lists this many, the costliest first."""
COUNT_LIMIT = 10_000
"""A filtered list counts its sessions up to this many (then says "10,000+")."""
SORTS = {
    "time": ("start_time", False),
    "time_asc": ("start_time", True),
    "cost": ("total_cost_mc", False),
    "cost_asc": ("total_cost_mc", True),
}
"""A sort's column and whether it ascends; ties go by id, in the same direction (one index each)."""


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC, and whether its charts go by hour (two days or less) or by day."""

    start: datetime
    end: datetime

    @classmethod
    def last(cls, days: int, now: datetime | None = None) -> Period:
        end = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return cls(end - timedelta(days=days), end)

    @property
    def hourly(self) -> bool:
        return self.end - self.start <= timedelta(days=2)

    def hour_bounds(self) -> tuple[str, str]:
        return self.start.strftime("%Y-%m-%dT%H"), self.end.strftime("%Y-%m-%dT%H")

    def day_bounds(self) -> tuple[str, str]:
        return self.start.strftime("%Y-%m-%d"), (self.end - timedelta(microseconds=1)).strftime("%Y-%m-%d")

    def iso_bounds(self) -> tuple[str, str]:
        return _iso(self.start), _iso(self.end)

    def slots(self) -> list[str]:
        """The chart's x axis: every hour or day of the period."""
        step = timedelta(hours=1) if self.hourly else timedelta(days=1)
        fmt = "%Y-%m-%dT%H" if self.hourly else "%Y-%m-%d"
        out, at = [], self.start if self.hourly else self.start.replace(hour=0)
        while at < self.end:
            out.append(at.strftime(fmt))
            at += step
        return out


def _next_day(day: str) -> str:
    return (datetime.strptime(day, "%Y-%m-%d") + timedelta(days=1)).strftime("%Y-%m-%d")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class SessionFilters:
    user_id: str | None = None
    model: str | None = None
    search: str | None = None
    """A session id, or its beginning."""
    start: str | None = None
    """The first day (``2026-11-29``)."""
    end: str | None = None
    """The last day, included."""
    sort: str = "time"
    after: tuple[Any, str] | None = None
    """The sort key and id of the row the page continues after (the previous page's last)."""
    before: tuple[Any, str] | None = None
    """... or of the row the page ends before (the next page's first: going back)."""


class Dashboard:
    """The dashboard's reads. ``scope_user``: the user a token may see (``None``: everyone)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.store.read(sql, params)

    # --- overview ---------------------------------------------------------------------------------
    def overview(self, period: Period, scope_user: str | None) -> dict[str, Any]:
        if scope_user is not None:
            return self._user_overview(period, scope_user)
        first, last = period.hour_bounds()
        slot_length = 13 if period.hourly else 10  # "2026-11-29T10" or "2026-11-29"
        rows = self._rows(
            f"SELECT substr(hour, 1, {slot_length}) AS slot, model, provider, type, SUM(interactions) AS interactions, "
            "SUM(failures) AS failures, SUM(unpriced) AS unpriced, SUM(prompt_tokens) AS prompt_tokens, "
            "SUM(completion_tokens) AS completion_tokens, SUM(cost_mc) AS cost_mc FROM usage_hourly "
            "WHERE hour >= ? AND hour < ? GROUP BY 1, 2, 3, 4",
            (first, last),
        )
        slots = period.slots()
        by_model: defaultdict[str, dict[str, Any]] = defaultdict(lambda: _totals())
        cost_by_model: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        tokens_by_model: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        cost_by_provider: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        totals = _totals()
        unpriced: defaultdict[str, int] = defaultdict(int)
        for row in rows:
            slot = row["slot"]
            model = row["model"] or f"({row['type']})"
            for target in (totals, by_model[model]):
                target["interactions"] += row["interactions"]
                target["failures"] += row["failures"]
                target["prompt_tokens"] += row["prompt_tokens"]
                target["completion_tokens"] += row["completion_tokens"]
                target["cost_mc"] += row["cost_mc"]
            cost_by_model[model][slot] += row["cost_mc"]
            tokens_by_model[model][slot] += row["prompt_tokens"] + row["completion_tokens"]
            cost_by_provider[row["provider"] or "(none)"][slot] += row["cost_mc"]
            if row["unpriced"]:
                unpriced[row["model"]] += row["unpriced"]
        users = self.top_users(period, limit=None)
        totals["sessions"] = sum(user["sessions"] for user in users)
        totals["users"] = len(users)
        start, end = period.iso_bounds()
        return {
            "period": {"start": start, "end": end, "hourly": period.hourly},
            "totals": totals,
            "charts": {
                "slots": slots,
                "cost_by_model": _series(cost_by_model, slots),
                "tokens_by_model": _series(tokens_by_model, slots),
                "cost_by_provider": _series(cost_by_provider, slots),
            },
            "models": self._model_table(by_model, period),
            "unpriced": [{"model": m, "interactions": n} for m, n in sorted(unpriced.items(), key=lambda kv: -kv[1])],
            "top_users": users[:10],
            "top_sessions": self.top_sessions(period, None, limit=10),
        }

    def _model_table(self, by_model: dict[str, dict[str, Any]], period: Period) -> list[dict[str, Any]]:
        """Per model: its totals, failure rate and latency percentiles (over the period's whole days)."""
        first, last = period.day_bounds()
        buckets: defaultdict[tuple[str, str], dict[int, int]] = defaultdict(dict)
        for row in self._rows(
            "SELECT model, measure, bucket, SUM(count) AS n FROM latency_daily WHERE day >= ? AND day <= ? "
            "GROUP BY model, measure, bucket",
            (first, last),
        ):
            buckets[(row["model"], row["measure"])][row["bucket"]] = row["n"]
        table = []
        for model, totals in sorted(by_model.items(), key=lambda kv: -kv[1]["cost_mc"]):
            durations, ttfc = buckets.get((model, "duration"), {}), buckets.get((model, "ttfc"), {})
            table.append(
                {
                    "model": model,
                    **totals,
                    "failure_rate": totals["failures"] / totals["interactions"] if totals["interactions"] else 0.0,
                    "p50_ms": percentile(durations, 0.5),
                    "p95_ms": percentile(durations, 0.95),
                    "ttfc_p50_ms": percentile(ttfc, 0.5),
                    "ttfc_p95_ms": percentile(ttfc, 0.95),
                }
            )
        return table

    def _user_overview(self, period: Period, user_id: str) -> dict[str, Any]:
        """What a token of one user sees: its own spend over time, sessions and totals."""
        daily = self.user_daily(user_id, period)
        totals = _totals()
        for row in daily:
            totals["interactions"] += row["interactions"]
            totals["prompt_tokens"] += row["prompt_tokens"]
            totals["completion_tokens"] += row["completion_tokens"]
            totals["cost_mc"] += row["cost_mc"]
        start, end = period.iso_bounds()
        totals["sessions"] = sum(row["sessions"] for row in daily)
        totals["users"] = 1
        slots = [row["day"] for row in daily]
        return {
            "period": {"start": start, "end": end, "hourly": False},
            "totals": totals,
            "charts": {
                "slots": slots,
                "cost_by_model": [{"name": user_id, "values": [row["cost_mc"] for row in daily]}],
                "tokens_by_model": [
                    {"name": user_id, "values": [row["prompt_tokens"] + row["completion_tokens"] for row in daily]}
                ],
                "cost_by_provider": [],
            },
            "models": [],
            "unpriced": [],
            "top_users": [],
            "top_sessions": self.top_sessions(period, user_id, limit=10),
        }

    def top_users(self, period: Period, *, limit: int | None, user_id: str | None = None) -> list[dict[str, Any]]:
        """Users by their spend in the period (``user_id``: that one only; ``limit`` ``None``: all)."""
        first, last = period.day_bounds()
        where, params = "day >= ? AND day <= ?", [first, last]
        if user_id is not None:
            where += " AND user_id = ?"
            params.append(user_id)
        return [
            dict(row)
            for row in self._rows(
                "SELECT user_id, SUM(sessions) AS sessions, SUM(interactions) AS interactions, "
                "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, "
                f"SUM(cost_mc) AS cost_mc FROM usage_user_daily WHERE {where} GROUP BY user_id "
                "ORDER BY cost_mc DESC, user_id LIMIT ?",
                [*params, -1 if limit is None else limit],
            )
        ]

    def top_sessions(self, period: Period, user_id: str | None, *, limit: int) -> list[dict[str, Any]]:
        start, end = period.iso_bounds()
        # Down the cost index until ``limit`` sessions of the period are found (the unary + keeps
        # SQLite from reading the whole period by start time and sorting it all by cost).
        where, params = "+start_time >= ? AND +start_time < ?", [start, end]
        if user_id is not None:
            where += " AND user_id = ?"
            params.append(user_id)
        rows = self._rows(
            f"SELECT * FROM sessions WHERE {where} ORDER BY total_cost_mc DESC, id DESC LIMIT ?",
            [*params, limit],
        )
        return [session_row(row) for row in rows]

    # --- sessions ---------------------------------------------------------------------------------
    def sessions(
        self, filters: SessionFilters, scope_user: str | None, *, size: int = PAGE_SIZE, count: bool = True
    ) -> dict[str, Any]:
        """A page of the list, with the keys of its first and last rows (where the pages before and
        after it start) and (``count``) the number of sessions that match."""
        where, params = ["1 = 1"], []
        user = scope_user if scope_user is not None else filters.user_id
        if user:
            where.append("user_id = ?")
            params.append(user)
        if filters.model:
            where.append("EXISTS (SELECT 1 FROM interactions i WHERE i.session_id = sessions.id AND i.model_name = ?)")
            params.append(filters.model)
        if filters.search:
            # The id's beginning, by the primary key's order (a range: indexed, whatever the size).
            where.append("id >= ? AND id < ?")
            params += [filters.search, filters.search + "\U0010ffff"]
        if filters.start:
            where.append("start_time >= ?")
            params.append(filters.start + "T00:00:00")
        if filters.end:
            where.append("start_time < ?")
            params.append(_next_day(filters.end))
        column, ascending = SORTS.get(filters.sort, SORTS["time"])
        page_where, page_params, backwards = list(where), list(params), False
        if filters.after is not None:
            page_where.append(f"({column}, id) {'>' if ascending else '<'} (?, ?)")
            page_params += list(filters.after)
        elif filters.before is not None:
            page_where.append(f"({column}, id) {'<' if ascending else '>'} (?, ?)")
            page_params += list(filters.before)
            backwards = True
        direction = "ASC" if ascending != backwards else "DESC"
        rows = self._rows(
            f"SELECT * FROM sessions WHERE {' AND '.join(page_where)} "
            f"ORDER BY {column} {direction}, id {direction} LIMIT ?",
            [*page_params, size + 1],
        )
        more = len(rows) > size
        rows = rows[:size]
        if backwards:
            rows.reverse()
        keys = [(row[column], row["id"]) for row in rows]
        total, exact = self._count_sessions(filters, user, " AND ".join(where), params) if count else (None, False)
        return {
            "sessions": [session_row(row) for row in rows],
            "total": total,
            "total_exact": exact,
            "first": keys[0] if keys else None,
            "last": keys[-1] if keys else None,
            # A page reached going back has newer rows before it only if that query found more.
            "has_before": (more if backwards else filters.after is not None) and bool(keys),
            "has_after": (filters.before is not None if backwards else more) and bool(keys),
        }

    def _count_sessions(
        self, filters: SessionFilters, user: str | None, clause: str, params: list[Any]
    ) -> tuple[int, bool]:
        """How many sessions match: exact from the daily counts when only the user and the dates
        filter, else counted up to :data:`COUNT_LIMIT` (``False``: there are more)."""
        if not filters.model and not filters.search:
            where, args = ["1 = 1"], []
            table = "usage_user_daily" if user else "sessions_daily"
            if user:
                where.append("user_id = ?")
                args.append(user)
            if filters.start:
                where.append("day >= ?")
                args.append(filters.start)
            if filters.end:
                where.append("day <= ?")
                args.append(filters.end)
            found = self._rows(f"SELECT COALESCE(SUM(sessions), 0) FROM {table} WHERE {' AND '.join(where)}", args)
            return int(found[0][0]), True
        counted = self._rows(
            f"SELECT COUNT(*) FROM (SELECT 1 FROM sessions WHERE {clause} LIMIT ?)", [*params, COUNT_LIMIT + 1]
        )[0][0]
        return min(counted, COUNT_LIMIT), counted <= COUNT_LIMIT

    def session(self, session_id: str, scope_user: str | None) -> dict[str, Any] | None:
        """The session (its totals, metadata and trace id) and its interactions in time order."""
        rows = self._rows("SELECT * FROM sessions WHERE id = ?", (session_id,))
        if not rows or (scope_user is not None and rows[0]["user_id"] != scope_user):
            return None
        session = session_row(rows[0])
        session["metadata"] = self.store.get_session(session_id)["metadata"]  # type: ignore[index]
        session["trace_id"] = rows[0]["trace_id"]
        interactions = []
        for item in self.store.session_interactions(session_id, None):
            metadata = item["metadata"]
            interactions.append(
                {
                    **{k: item[k] for k in ("id", "timestamp", "type", "status", "model_name", "duration_ms")},
                    "prompt_tokens": item["prompt_tokens"],
                    "completion_tokens": item["completion_tokens"],
                    "cached_tokens": metadata.get("cache_read_tokens"),
                    "reasoning_tokens": metadata.get("reasoning_tokens"),
                    "time_to_first_chunk_ms": metadata.get("time_to_first_chunk_ms"),
                    "provider": metadata.get("provider"),
                    "pricing": metadata.get("pricing"),
                    "pricing_version": metadata.get("pricing_version"),
                    "usage": metadata.get("usage"),
                    "db_read_ops": item["db_read_ops"],
                    "db_write_ops": item["db_write_ops"],
                    "api_call_count": item["api_call_count"],
                    "cost_mc": item["total_cost"]["micro_cents"],
                    "cost_parts_mc": {part: value["micro_cents"] for part, value in item["cost_breakdown"].items()},
                }
            )
        return {"session": session, "interactions": interactions}

    # --- users ------------------------------------------------------------------------------------
    def users(self, period: Period, scope_user: str | None) -> list[dict[str, Any]]:
        if scope_user is not None:
            return self.top_users(period, limit=1, user_id=scope_user)
        return self.top_users(period, limit=USERS_LIMIT)

    def user_daily(self, user_id: str, period: Period) -> list[dict[str, Any]]:
        first, last = period.day_bounds()
        return [
            dict(row)
            for row in self._rows(
                "SELECT day, sessions, interactions, prompt_tokens, completion_tokens, cost_mc FROM usage_user_daily "
                "WHERE user_id = ? AND day >= ? AND day <= ? ORDER BY day",
                (user_id, first, last),
            )
        ]

    def version(self, scope_user: str | None) -> str:
        """Changes whenever something new is stored (for a user's token: something of that user):
        what the pages poll to refresh themselves."""
        if scope_user is None:
            return str(self.store.generation)
        row = self._rows(
            "SELECT COUNT(*), COUNT(end_time), MAX(last_activity), SUM(total_interactions) FROM sessions "
            "WHERE user_id = ?",
            (scope_user,),
        )[0]
        return "|".join(str(value) for value in row)


def _totals() -> dict[str, Any]:
    return {"interactions": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_mc": 0}


def _series(data: Mapping[str, Mapping[str, int]], slots: list[str]) -> list[dict[str, Any]]:
    ordered = sorted(data.items(), key=lambda kv: -sum(kv[1].values()))
    return [{"name": name, "values": [values.get(slot, 0) for slot in slots]} for name, values in ordered]


def session_row(row: sqlite3.Row) -> dict[str, Any]:
    start, end = row["start_time"], row["end_time"]
    minutes = None
    if end is not None:
        minutes = round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 60, 2)
    return {
        "id": row["id"],
        "user_id": row["user_id"],
        "start_time": start,
        "end_time": end,
        "status": "ended" if end is not None else "active",
        "last_activity": row["last_activity"] or start,
        "duration_minutes": minutes,
        "interactions": row["total_interactions"],
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "cost_mc": row["total_cost_mc"],
    }
