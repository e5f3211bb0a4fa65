"""The contract's request validation, with its error codes and messages.

Every check raises :class:`ContractError`, which the app turns into the contract's error body
``{"error", "message", "details"}``. Validated bodies come back normalised (timestamps as
``...Z`` UTC strings with milliseconds), so the store only ever sees valid rows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .._ranges import MAX_COUNT, MAX_DURATION_MS, MAX_ID_LENGTH
from ..attributes import COST_PARTS, INTERACTION_TYPES, STATUSES
from ..contract import MAX_BATCH
from ..redaction import clean_metadata

_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)
# 2026-11-29T10:15:00.123Z: UTC, milliseconds, "Z" (the stored form; other forms are converted)
_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class ContractError(Exception):
    def __init__(
        self, code: str, message: str, status: int, details: Mapping[str, Any] | None = None, **more: Any
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = {**(details or {}), **more}

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "details": self.details}


def invalid(message: str, **details: Any) -> ContractError:
    return ContractError("invalid_request", message, 400, details)


def _object(body: Any, what: str = "Request body") -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise invalid(f"{what} must be a JSON object")
    return body


def _only(body: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in body:
        if key not in allowed:
            raise invalid(f"Unknown field: {str(key)[:64]}", field=str(key)[:64], allowed_fields=list(allowed))


def _required(body: Mapping[str, Any], field: str) -> Any:
    if field not in body or body[field] is None:
        raise invalid(f"Missing required field: {field}", field=field)
    return body[field]


def identifier(body: Mapping[str, Any], field: str) -> str:
    value = _required(body, field)
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"Invalid {field}: must be a non-empty string", field=field)
    if len(value) > MAX_ID_LENGTH:
        raise invalid(f"Invalid {field}: longer than {MAX_ID_LENGTH} characters", field=field)
    return value


def timestamp(body: Mapping[str, Any], field: str) -> str:
    value = _required(body, field)
    return parse_timestamp(value, field)


def parse_timestamp(value: Any, field: str) -> str:
    if not isinstance(value, str) or len(value) > 64:
        raise invalid(f"Invalid {field}: must be an ISO-8601 UTC timestamp", field=field)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise invalid(f"Invalid {field}: must be an ISO-8601 UTC timestamp", field=field) from None
    if _CANONICAL.fullmatch(value) and "2000" <= value < "2100":
        return value  # already as stored (what the exporter sends): no conversion to make
    if parsed.tzinfo is None:
        raise invalid(f"Invalid {field}: the timestamp needs a time zone (Z for UTC)", field=field)
    parsed = parsed.astimezone(UTC)
    if not _EARLIEST <= parsed < _LATEST:
        raise invalid(f"Invalid {field}: out of range (2000 to 2099)", field=field, value=value)
    return parsed.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _count(body: Mapping[str, Any], field: str, minimum: int = 0) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if type(value) is not int or not minimum <= value <= MAX_COUNT:
        raise invalid(f"Invalid {field}: must be an integer from {minimum} to 2**53", field=field)
    return value


def _metadata(body: Mapping[str, Any]) -> dict[str, Any]:
    value = body.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid("Invalid metadata: must be a JSON object", field="metadata")
    # Stored as every other path records it: secrets redacted at any depth, bounded (what does
    # not fit is counted in "_truncated", never the reason to refuse the interaction).
    return clean_metadata(value)


def session_start(body: Any) -> dict[str, Any]:
    body = _object(body)
    _only(body, ("session_id", "user_id", "start_time", "metadata"))
    return {
        "session_id": identifier(body, "session_id"),
        "user_id": identifier(body, "user_id"),
        "start_time": timestamp(body, "start_time"),
        "metadata": _metadata(body),
    }


def session_end(body: Any) -> dict[str, Any]:
    body = _object(body)
    _only(body, ("session_id", "end_time"))
    return {"session_id": identifier(body, "session_id"), "end_time": timestamp(body, "end_time")}


_INTERACTION_FIELDS = (
    "session_id",
    "user_id",
    "type",
    "timestamp",
    "model_name",
    "prompt_tokens",
    "completion_tokens",
    "db_read_ops",
    "db_write_ops",
    "api_call_count",
    "compute_duration_ms",
    "status",
    "costs",
    "metadata",
)


def interaction(body: Any) -> dict[str, Any]:
    body = _object(body)
    _only(body, _INTERACTION_FIELDS)
    out: dict[str, Any] = {
        "session_id": identifier(body, "session_id"),
        "user_id": identifier(body, "user_id"),
        "timestamp": timestamp(body, "timestamp"),
    }
    kind = _required(body, "type")
    if kind not in INTERACTION_TYPES:
        raise invalid(
            f"Invalid interaction type: {str(kind)[:64]}",
            field="type",
            value=str(kind)[:64],
            allowed_values=list(INTERACTION_TYPES),
        )
    out["type"] = kind
    model = body.get("model_name")
    if kind == "chat" and model is None:
        raise invalid("model_name required for chat interactions", field="model_name", type="chat")
    if model is not None and (not isinstance(model, str) or not model or len(model) > MAX_ID_LENGTH):
        raise invalid("Invalid model_name: must be a non-empty string", field="model_name")
    out["model_name"] = model
    for field, only_for, minimum in (
        ("prompt_tokens", "chat", 0),
        ("completion_tokens", "chat", 0),
        ("db_read_ops", "db", 0),
        ("db_write_ops", "db", 0),
        ("api_call_count", "api", 1),
    ):
        value = _count(body, field, minimum)
        if value is not None and kind != only_for:
            raise invalid(f"Invalid {field}: only for {only_for} interactions", field=field, type=kind)
        out[field] = value
    duration = body.get("compute_duration_ms")
    if duration is not None and (
        isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or not math.isfinite(duration)
        or not 0 <= duration <= MAX_DURATION_MS
    ):
        raise invalid("Invalid compute_duration_ms: must be a number from 0 to 1e12", field="compute_duration_ms")
    out["duration_ms"] = duration
    status = body.get("status", "completed")
    if status not in STATUSES:
        raise invalid(f"Invalid status: {str(status)[:64]}", field="status", allowed_values=list(STATUSES))
    out["status"] = status
    costs = body.get("costs")
    if costs is not None:
        costs = _object(costs, "costs")
        _only(costs, COST_PARTS)
        out["costs"] = {part: _count(costs, part) or 0 for part in COST_PARTS}
    else:
        out["costs"] = None
    out["metadata"] = _metadata(body)
    return out


def batch(body: Any) -> list[dict[str, Any]]:
    body = _object(body)
    _only(body, ("interactions",))
    items = _required(body, "interactions")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise invalid(f"Invalid interactions: must be a list of 1 to {MAX_BATCH} interactions", field="interactions")
    out = []
    for index, item in enumerate(items):
        try:
            out.append(interaction(item))
        except ContractError as exc:
            exc.details["index"] = index
            exc.message = f"interactions[{index}]: {exc.message}"
            raise
    return out
