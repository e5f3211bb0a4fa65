"""``otel-analytics report``: sessions, tokens and cost per session, user and model, as tables.

It reads a tracker's read API over HTTP, so it works against the local tracker and any tracker
that serves the same routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from .pricing import format_usd, infer_provider


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

    def close(self) -> None:
        self._client.close()


def session_path(session_id: str) -> str:
    """The read API's path of a session: the id percent-encoded whole, ``/`` and ``.`` too (a
    client would drop a path segment of ``.`` or ``..``), as the tracker reads it."""
    return "/v1/sessions/" + quote(session_id, safe="").replace(".", "%2E")


def provider_of(interaction: dict[str, Any]) -> str:
    """The provider a chat interaction went to: its metadata's (the local tracker keeps it), else
    what its model's name implies."""
    metadata = interaction.get("metadata")
    provider = metadata.get("provider") if isinstance(metadata, dict) else None
    return (
        provider if isinstance(provider, str) and provider else infer_provider(interaction["model_name"]) or "unknown"
    )


def _tokens(interactions: Sequence[dict[str, Any]]) -> tuple[int, int]:
    return (
        sum(i.get("prompt_tokens") or 0 for i in interactions),
        sum(i.get("completion_tokens") or 0 for i in interactions),
    )


def sessions_report(reader: TrackerReader, *, user_id: str | None = None, limit: int = 50) -> str:
    summary = reader.get("/v1/stats/summary", user_id=user_id)
    sessions = reader.get("/v1/sessions", user_id=user_id, limit=limit, sort="start_time_asc")
    rows: list[list[Any]] = []
    models: dict[str, list[int]] = {}
    providers: dict[str, list[int]] = {}
    for session in sessions["data"]:
        interactions = reader.get(f"{session_path(session['id'])}/interactions")["interactions"]
        tokens_in, tokens_out = _tokens(interactions)
        minutes = session["duration_minutes"]
        rows.append(
            [
                session["id"],
                session["user_id"],
                session["start_time"][:19].replace("T", " "),
                "open" if minutes is None else f"{minutes:.1f} min",
                session["total_interactions"],
                tokens_in,
                tokens_out,
                session["total_cost"]["display"],
            ]
        )
        for item in interactions:
            if item["type"] != "chat":
                continue
            for key, totals in ((item["model_name"], models), (provider_of(item), providers)):
                entry = totals.setdefault(key, [0, 0, 0, 0])
                entry[0] += 1
                entry[1] += item.get("prompt_tokens") or 0
                entry[2] += item.get("completion_tokens") or 0
                entry[3] += item["total_cost"]["micro_cents"]
    users = reader.get("/v1/stats/by-user", limit=limit)["users"]
    out = [
        f"{summary['total_sessions']} sessions, {summary['total_interactions']} interactions, "
        f"{summary['unique_users']} users, total cost {summary['total_cost']['display']} "
        f"(avg {summary['avg_cost_per_session']['display']} per session)",
        "",
        "Sessions",
        table(
            ["session", "user", "started (UTC)", "duration", "interactions", "tokens in", "tokens out", "cost"],
            rows,
            right=(4, 5, 6, 7),
        ),
        "",
        "By model",
        table(
            ["model", "calls", "tokens in", "tokens out", "cost"],
            [[m, *v[:3], format_usd(v[3])] for m, v in sorted(models.items(), key=lambda kv: -kv[1][3])],
            right=(1, 2, 3, 4),
        ),
        "",
        "By provider",
        table(
            ["provider", "calls", "tokens in", "tokens out", "cost"],
            [[p, *v[:3], format_usd(v[3])] for p, v in sorted(providers.items(), key=lambda kv: -kv[1][3])],
            right=(1, 2, 3, 4),
        ),
        "",
        "By user",
        table(
            ["user", "sessions", "interactions", "cost"],
            [[u["user_id"], u["sessions_count"], u["interactions_count"], u["total_cost"]["display"]] for u in users],
            right=(1, 2, 3),
        ),
    ]
    if sessions["pagination"]["has_more"]:
        out.insert(1, f"(showing {len(rows)} of {sessions['pagination']['total']} sessions)")
    return "\n".join(out)


def session_report(reader: TrackerReader, session_id: str) -> str:
    session = reader.get(session_path(session_id))
    interactions = reader.get(f"{session_path(session_id)}/interactions")["interactions"]
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
                item["total_cost"]["display"],
            ]
        )
    header = (
        f"Session {session['id']} (user {session['user_id']}, trace {session['trace_id']}): "
        f"{session['total_interactions']} interactions, {session['total_cost']['display']}"
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
