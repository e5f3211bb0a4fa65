"""``otel-analytics report``: its three formats agree, its filters, money to the micro-cent, active
sessions, a reader that goes away, and help a person can read."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from otel_analytics.cli import build_parser, main
from otel_analytics.report import money
from tests.conftest import LocalTracker
from tests.helpers import clean_environ

NOW = datetime.now(UTC).replace(microsecond=0)


def stamp(delta: timedelta) -> str:
    return (NOW + delta).isoformat().replace("+00:00", "Z")


@pytest.fixture
def tracker(local_tracker: LocalTracker) -> LocalTracker:
    """Three sessions: two of ann (yesterday, ended; today, still active), one of bob (today)."""
    c = local_tracker.client

    def chat(session: str, user: str, when: timedelta, model: str, prompt: int, completion: int) -> None:
        body = {
            "session_id": session,
            "user_id": user,
            "type": "chat",
            "timestamp": stamp(when),
            "model_name": model,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
        }
        assert c.post("/v1/track/interaction", json=body).status_code == 202

    for session, user, when in (("conv-old", "ann", -timedelta(days=1)), ("conv-new", "ann", -timedelta(minutes=5))):
        c.post("/v1/track/session/start", json={"session_id": session, "user_id": user, "start_time": stamp(when)})
    chat("conv-old", "ann", -timedelta(days=1), "gpt-4o", 1000, 100)
    c.post(
        "/v1/track/session/end",
        json={"session_id": "conv-old", "end_time": stamp(-timedelta(days=1) + timedelta(minutes=3))},
    )
    chat("conv-new", "ann", -timedelta(minutes=4), "gpt-4o-mini", 12, 3)  # a cost under a cent
    chat("conv-new", "ann", -timedelta(minutes=2), "claude-3-5-haiku-20241022", 500, 50)
    chat("conv-bob", "bob", -timedelta(minutes=1), "gpt-4o-mini", 2000, 200)
    return local_tracker


def report(tracker: LocalTracker, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "otel_analytics.cli", "report", "--url", tracker.url, *args],
        capture_output=True,
        text=True,
        env=clean_environ(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_money_to_the_micro_cent() -> None:
    assert [money(mc) for mc in (0, 5, 42, 12_900, 300_000, 123_456_789)] == [
        "$0.00000",
        "$0.00005",
        "$0.00042",
        "$0.12900",
        "$3.00000",
        "$1234.56789",
    ]


def test_csv_and_json_parse_and_sum_to_the_tables_totals(tracker: LocalTracker) -> None:
    text = report(tracker)
    document = json.loads(report(tracker, "--format", "json"))
    rows = list(csv.DictReader(io.StringIO(report(tracker, "--format", "csv"))))
    total = document["total"]["cost"]["micro_cents"]
    assert (
        total
        == sum(int(row["cost_micro_cents"]) for row in rows)
        == sum(s["cost"]["micro_cents"] for s in document["sessions"])
    )
    assert f"total cost {money(total)}" in text
    assert [row["id"] for row in rows] == ["conv-old", "conv-new", "conv-bob"]
    assert sum(m["cost"]["micro_cents"] for m in document["models"].values()) == total
    assert sum(int(row["tokens_in"]) for row in rows) == 1000 + 12 + 500 + 2000
    mini = next(s for s in document["sessions"] if s["id"] == "conv-new")
    assert mini["cost"]["micro_cents"] > 0 and "$0.0000 " not in text  # under a cent, still shown


def test_a_session_never_ended_is_active_with_its_last_activity(tracker: LocalTracker) -> None:
    text = report(tracker)
    line = next(line for line in text.splitlines() if line.startswith("conv-new"))
    assert f"active, last {stamp(-timedelta(minutes=2))[:19].replace('T', ' ')}" in line
    assert " open " not in text
    old = next(line for line in text.splitlines() if line.startswith("conv-old"))
    assert "3.0 min" in old


def test_filters_by_time_user_and_model(tracker: LocalTracker) -> None:
    today = NOW.date().isoformat()

    def ids(*args: str) -> list[str]:
        return [s["id"] for s in json.loads(report(tracker, "--format", "json", *args))["sessions"]]

    assert ids("--since", today) == ["conv-new", "conv-bob"] or NOW.hour == 0  # (just after midnight: all today)
    assert ids("--until", stamp(-timedelta(hours=1))) == ["conv-old"]
    assert ids("--user", "ann") == ["conv-old", "conv-new"]
    assert ids("--model", "gpt-4o-mini") == ["conv-new", "conv-bob"]
    only = json.loads(report(tracker, "--format", "json", "--model", "gpt-4o-mini"))
    assert list(only["models"]) == ["gpt-4o-mini"]


def test_one_session_in_each_format(tracker: LocalTracker) -> None:
    assert "active" in report(tracker, "--session", "conv-new")
    rows = list(csv.DictReader(io.StringIO(report(tracker, "--session", "conv-new", "--format", "csv"))))
    assert [row["model_name"] for row in rows] == ["gpt-4o-mini", "claude-3-5-haiku-20241022"]
    assert json.loads(report(tracker, "--session", "conv-new", "--format", "json"))["session"]["id"] == "conv-new"


def test_piped_into_head_there_is_no_traceback(tracker: LocalTracker) -> None:
    command = f"{sys.executable} -m otel_analytics.cli report --url {tracker.url} | head -1"
    result = subprocess.run(command, shell=True, capture_output=True, text=True, env=clean_environ(), timeout=60)
    assert result.stdout.startswith("3 sessions")
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


def test_bad_dates_are_clear_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["report", "--since", "yesterday"])
    assert "--since 'yesterday': not a date" in capsys.readouterr().err


def test_help_has_no_markup() -> None:
    parser = build_parser()
    texts: list[str] = []
    stack = [parser]
    while stack:
        current = stack.pop()
        texts.append(current.format_help())
        for action in current._actions:
            if isinstance(action.choices, dict):
                stack.extend(action.choices.values())
    for text in texts:
        assert "``" not in text and ":func:" not in text and ".. " not in text, text


def test_csv_cells_a_spreadsheet_would_run_are_neutralised(local_tracker: LocalTracker) -> None:
    hostile = '=HYPERLINK("http://x","y")'
    body = {
        "session_id": hostile,
        "user_id": "@user",
        "type": "chat",
        "timestamp": stamp(-timedelta(minutes=1)),
        "model_name": "+gpt-4o",
        "prompt_tokens": 10,
    }
    assert local_tracker.client.post("/v1/track/interaction", json=body).status_code == 202
    (row,) = csv.DictReader(io.StringIO(report(local_tracker, "--format", "csv")))
    assert (row["id"], row["user_id"]) == ("'" + hostile, "'@user")
    (item,) = csv.DictReader(io.StringIO(report(local_tracker, "--session", hostile, "--format", "csv")))
    assert item["model_name"] == "'+gpt-4o" and item["prompt_tokens"] == "10"
