"""``otel-analytics report``: sessions, tokens and cost per session, model, provider and user.

It reads a tracker's read API over HTTP, so it works against the local tracker and any tracker that
serves the same routes. Three formats of the same figures: ``table`` (for a person), ``csv`` and
``json`` (for a spreadsheet or a script); filters by start time, user and model. Money is shown to
the micro-cent (1 mc = $0.00001), so a cost under a cent is never ``$0.0000``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from .pricing import infer_provider

FORMATS = ("table", "csv", "json")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """A plain text table; columns in ``right`` (numbers) are right-aligned."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def money(mc: int) -> str:
    """Dollars to the micro-cent: ``$0.00042`` (42 mc), ``$3.00000``; exact, never rounded to 0."""
    sign = "-" if mc < 0 else ""
    dollars, rest = divmod(abs(mc), 100_000)
    return f"{sign}${dollars}.{rest:05d}"


def session_path(session_id: str) -> str:
    """The read API's path of a session: the id percent-encoded whole, ``/`` and ``.`` too (a
    client would drop a path segment of ``.`` or ``..``), as the tracker reads it."""
    return "/v1/sessions/" + quote(session_id, safe="").replace(".", "%2E")


class TrackerReader:
    def __init__(self, url: str, token: str | None = None, timeout_s: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)

    def get(self, path: str, **params: Any) -> Any:
        response = self._client.get(path, params={k: v for k, v in params.items() if v is not None})
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise SystemExit(f"tracker answered {response.status_code} for {path}: {message[:300]}")
        return response.json()

    def sessions(self, *, user_id: str | None, since: str | None, until: str | None, limit: int) -> Iterator[Any]:
        """Sessions oldest first, page by page, at most ``limit``."""
        offset = 0
        while offset < limit:
            page = self.get(
                "/v1/sessions",
                user_id=user_id,
                start_time_min=since,
                start_time_max=until,
                sort="start_time_asc",
                limit=min(100, limit - offset),
                offset=offset,
            )
            yield from page["data"]
            offset += len(page["data"])
            if not page["pagination"]["has_more"] or not page["data"]:
                return

    def close(self) -> None:
        self._client.close()


def provider_of(interaction: dict[str, Any]) -> str:
    """The provider a chat interaction went to: its metadata's (the local tracker keeps it), else
    what its model's name implies."""
    metadata = interaction.get("metadata")
    provider = metadata.get("provider") if isinstance(metadata, dict) else None
    if isinstance(provider, str) and provider:
        return provider
    return infer_provider(interaction["model_name"]) or "unknown"


@dataclass
class _Totals:
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    mc: int = 0

    def add(self, interaction: dict[str, Any]) -> None:
        self.calls += 1
        self.tokens_in += interaction.get("prompt_tokens") or 0
        self.tokens_out += interaction.get("completion_tokens") or 0
        self.mc += interaction["total_cost"]["micro_cents"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost": {"micro_cents": self.mc, "usd": money(self.mc)},
        }


@dataclass
class Report:
    """The figures every format shows."""

    sessions: list[dict[str, Any]] = field(default_factory=list)
    models: dict[str, _Totals] = field(default_factory=dict)
    providers: dict[str, _Totals] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def total_mc(self) -> int:
        return sum(int(s["cost"]["micro_cents"]) for s in self.sessions)


def collect(
    reader: TrackerReader,
    *,
    user_id: str | None = None,
    model: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = 50,
) -> Report:
    """The report of the sessions that started in [``since``, ``until``) (ISO times or dates), of
    ``user_id``, counting only ``model``'s interactions when it is given."""
    report = Report()
    for session in reader.sessions(user_id=user_id, since=since, until=until, limit=limit):
        interactions = reader.get(f"{session_path(session['id'])}/interactions")["interactions"]
        if model is not None:
            interactions = [i for i in interactions if i["model_name"] == model]
            if not interactions:
                continue
        totals = _Totals()
        for item in interactions:
            totals.add(item)
            if item["type"] == "chat":
                report.models.setdefault(item["model_name"], _Totals()).add(item)
                report.providers.setdefault(provider_of(item), _Totals()).add(item)
        last = max((i["timestamp"] for i in interactions), default=session["start_time"])
        user = report.users.setdefault(
            session["user_id"], {"user_id": session["user_id"], "sessions": 0, "interactions": 0, "mc": 0}
        )
        user["sessions"] += 1
        user["interactions"] += len(interactions)
        user["mc"] += totals.mc
        report.sessions.append(
            {
                "id": session["id"],
                "user_id": session["user_id"],
                "start_time": session["start_time"],
                "end_time": session["end_time"],
                "status": "ended" if session["end_time"] else "active",
                "last_activity": last,
                "duration_minutes": session["duration_minutes"],
                "interactions": len(interactions),
                "tokens_in": totals.tokens_in,
                "tokens_out": totals.tokens_out,
                "cost": {"micro_cents": totals.mc, "usd": money(totals.mc)},
            }
        )
    return report


def _when(stamp: str | None) -> str:
    return "" if not stamp else stamp[:19].replace("T", " ")


def as_table(report: Report) -> str:
    sessions = report.sessions
    users = len({s["user_id"] for s in sessions})
    count = sum(s["interactions"] for s in sessions)
    average = report.total_mc // len(sessions) if sessions else 0
    rows = [
        [
            s["id"],
            s["user_id"],
            _when(s["start_time"]),
            f"{s['duration_minutes']:.1f} min"
            if s["status"] == "ended"
            else f"active, last {_when(s['last_activity'])}",
            s["interactions"],
            s["tokens_in"],
            s["tokens_out"],
            s["cost"]["usd"],
        ]
        for s in sessions
    ]

    def by(name: str, totals: dict[str, _Totals]) -> str:
        ordered = sorted(totals.items(), key=lambda kv: -kv[1].mc)
        return table(
            [name, "calls", "tokens in", "tokens out", "cost"],
            [[key, t.calls, t.tokens_in, t.tokens_out, money(t.mc)] for key, t in ordered],
            right=(1, 2, 3, 4),
        )

    user_rows = [
        [u["user_id"], u["sessions"], u["interactions"], money(u["mc"])]
        for u in sorted(report.users.values(), key=lambda u: -u["mc"])
    ]
    return "\n".join(
        [
            f"{len(sessions)} sessions, {count} interactions, {users} users, total cost {money(report.total_mc)} "
            f"(avg {money(average)} per session)",
            "",
            "Sessions",
            table(
                ["session", "user", "started (UTC)", "duration", "interactions", "tokens in", "tokens out", "cost"],
                rows,
                right=(4, 5, 6, 7),
            ),
            "",
            "By model",
            by("model", report.models),
            "",
            "By provider",
            by("provider", report.providers),
            "",
            "By user",
            table(["user", "sessions", "interactions", "cost"], user_rows, right=(1, 2, 3)),
        ]
    )


_SESSION_COLUMNS = (
    "id",
    "user_id",
    "start_time",
    "end_time",
    "status",
    "last_activity",
    "interactions",
    "tokens_in",
    "tokens_out",
    "cost_micro_cents",
    "cost_usd",
)


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text starting as a formula would (``=``, ``+``,
    ``-``, ``@``, a tab or a carriage return) gets a leading ``'``; ids and names are users' text.
    ``None`` is an empty cell; numbers are kept."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def as_csv(report: Report) -> str:
    """One row a session, its cost in micro-cents (exact) and dollars."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_SESSION_COLUMNS)
    for s in report.sessions:
        writer.writerow([*(csv_cell(s[c]) for c in _SESSION_COLUMNS[:9]), s["cost"]["micro_cents"], s["cost"]["usd"]])
    return out.getvalue().rstrip("\n")


def as_json(report: Report) -> str:
    return json.dumps(
        {
            "total": {
                "sessions": len(report.sessions),
                "cost": {"micro_cents": report.total_mc, "usd": money(report.total_mc)},
            },
            "sessions": report.sessions,
            "models": {name: t.as_dict() for name, t in report.models.items()},
            "providers": {name: t.as_dict() for name, t in report.providers.items()},
            "users": [
                {**{k: v for k, v in u.items() if k != "mc"}, "cost": {"micro_cents": u["mc"], "usd": money(u["mc"])}}
                for u in report.users.values()
            ],
        },
        indent=2,
    )


def render(report: Report, output: str) -> str:
    return {"table": as_table, "csv": as_csv, "json": as_json}[output](report)


def session_report(reader: TrackerReader, session_id: str, output: str = "table") -> str:
    """One session's interactions."""
    session = reader.get(session_path(session_id))
    interactions = reader.get(f"{session_path(session_id)}/interactions")["interactions"]
    if output == "json":
        return json.dumps({"session": session, "interactions": interactions}, indent=2)
    if output == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        columns = ["timestamp", "type", "model_name", "prompt_tokens", "completion_tokens", "duration_ms", "status"]
        writer.writerow([*columns, "cost_micro_cents"])
        for item in interactions:
            writer.writerow([*(csv_cell(item.get(c)) for c in columns), item["total_cost"]["micro_cents"]])
        return out.getvalue().rstrip("\n")
    rows = []
    for item in interactions:
        detail = item["model_name"] or ""
        if item["type"] == "db":
            detail = f"{item.get('db_read_ops') or 0} reads, {item.get('db_write_ops') or 0} writes"
        elif item["type"] == "api":
            detail = f"{item.get('api_call_count') or 0} calls"
        duration = item["duration_ms"]
        rows.append(
            [
                item["timestamp"][11:23],
                item["type"],
                detail,
                item["prompt_tokens"],
                item["completion_tokens"],
                "" if duration is None else f"{duration:.0f}",
                item["status"],
                money(item["total_cost"]["micro_cents"]),
            ]
        )
    total = sum(item["total_cost"]["micro_cents"] for item in interactions)
    state = "ended" if session["end_time"] else "active"
    header = (
        f"Session {session['id']} (user {session['user_id']}, {state}, trace {session['trace_id']}): "
        f"{len(interactions)} interactions, {money(total)}"
    )
    return "\n".join(
        [
            header,
            table(
                ["time", "type", "model / ops", "tokens in", "tokens out", "ms", "status", "cost"],
                rows,
                right=(3, 4, 5, 7),
            ),
        ]
    )
