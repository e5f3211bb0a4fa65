"""A strict fake of the deployed tracker: a real HTTP server on 127.0.0.1 for exporter tests.

Written independently of the package's own validation: it refuses (400) any field or shape that
``shared/tracker-api.md`` does not allow, so an exporter that would send the deployed worker
something it might reject fails here. Faults are scripted per route: a queue of canned answers
(status, headers, body, delay, or a dropped connection) served before the normal behaviour.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
TYPES = ("chat", "db", "api", "cost-event")
START_FIELDS = {"session_id", "user_id", "start_time", "metadata"}
END_FIELDS = {"session_id", "end_time"}
INTERACTION_FIELDS = {
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
}
COST_FIELDS = {"ai_tokens_cost_mc", "db_ops_cost_mc", "api_calls_cost_mc", "compute_time_cost_mc"}


class Reject(Exception):
    pass


def _id(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > 256:
        raise Reject(f"Missing required field: {name}")


def _iso(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if not isinstance(value, str) or not ISO_Z.match(value):
        raise Reject(f"{name} must be an ISO-8601 UTC string, got {value!r}")
    datetime.fromisoformat(value)


def _nonneg_int(body: dict[str, Any], name: str, minimum: int = 0) -> None:
    # JavaScript's numbers hold integers exactly up to 2**53: the worker refuses larger ones.
    if name in body and (type(body[name]) is not int or not minimum <= body[name] <= 2**53):
        raise Reject(f"{name} must be an integer from {minimum} to 2**53")


def check_start(body: Any) -> None:
    if not isinstance(body, dict) or set(body) - START_FIELDS:
        raise Reject(f"unexpected fields {set(body) - START_FIELDS if isinstance(body, dict) else body}")
    _id(body, "session_id")
    _id(body, "user_id")
    _iso(body, "start_time")
    if "metadata" in body and not isinstance(body["metadata"], dict):
        raise Reject("metadata must be an object")


def check_end(body: Any) -> None:
    if not isinstance(body, dict) or set(body) != END_FIELDS:
        raise Reject(f"session end takes exactly {END_FIELDS}")
    _id(body, "session_id")
    _iso(body, "end_time")


def check_interaction(body: Any) -> None:
    if not isinstance(body, dict) or set(body) - INTERACTION_FIELDS:
        raise Reject(f"unexpected fields {set(body) - INTERACTION_FIELDS if isinstance(body, dict) else body}")
    for name in ("session_id", "user_id"):
        _id(body, name)
    _iso(body, "timestamp")
    kind = body.get("type")
    if kind not in TYPES:
        raise Reject(f"Invalid interaction type: {kind}")
    if kind == "chat" and not (isinstance(body.get("model_name"), str) and body["model_name"]):
        raise Reject("model_name required for chat interactions")
    for name, only in (
        ("prompt_tokens", "chat"),
        ("completion_tokens", "chat"),
        ("db_read_ops", "db"),
        ("db_write_ops", "db"),
        ("api_call_count", "api"),
    ):
        if name in body and kind != only:
            raise Reject(f"{name} is {only} only")
        _nonneg_int(body, name, 1 if name == "api_call_count" else 0)
    duration = body.get("compute_duration_ms")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int | float) or duration < 0):
        raise Reject("compute_duration_ms must be a non-negative number")
    if body.get("status", "completed") not in ("completed", "failed", "timeout"):
        raise Reject("bad status")
    if "costs" in body:
        costs = body["costs"]
        if not isinstance(costs, dict) or set(costs) - COST_FIELDS:
            raise Reject("bad costs")
        for name in costs:
            _nonneg_int(costs, name)
    if not isinstance(body.get("metadata", {}), dict):
        raise Reject("metadata must be an object")


@dataclass
class Fault:
    status: int = 500
    body: bytes = b'{"error":"internal_error","message":"scripted","details":{}}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    """Close the connection without answering."""


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    answered: int


class FakeTracker:
    def __init__(self, *, batch_route: bool = True) -> None:
        self.batch_route = batch_route
        self.received: list[Received] = []
        self.faults: dict[str, list[Fault]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.interactions: list[dict[str, Any]] = []
        self.fail_until: float = 0.0
        """While time.monotonic() < this, every write answers 503."""
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path == "/health":
                    self._answer(200, {"status": "ok", "database": {"status": "connected", "latency_ms": 1}})
                else:
                    self._answer(404, {"error": "not_found", "message": self.path, "details": {}})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fake._handle(self, raw)

            def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, path: str, *faults: Fault) -> None:
        with self._lock:
            self.faults.setdefault(path, []).extend(faults)

    def requests(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def _handle(self, handler: Any, raw: bytes) -> None:
        path = handler.path
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            fault = self.faults[path].pop(0) if self.faults.get(path) else None
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if fault is None and time.monotonic() < self.fail_until:
            fault = Fault(status=503)
        if fault is not None:
            time.sleep(fault.delay)
            with self._lock:
                self.received.append(Received(path, headers, body, fault.status if not fault.drop else 0))
            if fault.drop:
                handler.close_connection = True
                handler.connection.shutdown(2)
                return
            handler._answer(fault.status, fault.body, fault.headers)
            return
        status, answer = self._apply(path, body, headers)
        with self._lock:
            self.received.append(Received(path, headers, body, status))
        handler._answer(status, answer)

    def _apply(self, path: str, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        try:
            if path == "/v1/track/session/start":
                check_start(body)
                with self._lock:
                    if body["session_id"] in self.sessions:
                        return 200, {"session_id": body["session_id"], "status": "already_exists", "message": ""}
                    self.sessions[body["session_id"]] = dict(body)
                return 201, {"session_id": body["session_id"], "status": "created", "message": ""}
            if path == "/v1/track/session/end":
                check_end(body)
                with self._lock:
                    session = self.sessions.get(body["session_id"])
                    if session is None:
                        return 404, {"error": "not_found", "message": "Session not found", "details": {}}
                    session["end_time"] = body["end_time"]
                    count = sum(1 for i in self.interactions if i["session_id"] == body["session_id"])
                return 200, {
                    "session_id": body["session_id"],
                    "total_interactions": count,
                    "total_cost": {"micro_cents": 0, "display": "$0.0000", "currency": "USD"},
                }
            if path == "/v1/track/interaction":
                check_interaction(body)
                self._store([body])
                return 202, {"interaction_id": "int-1", "status": "accepted", "message": ""}
            if path == "/v1/track/interaction/batch" and self.batch_route:
                if not isinstance(body, dict) or set(body) != {"interactions"}:
                    raise Reject("batch takes {interactions}")
                items = body["interactions"]
                if not isinstance(items, list) or not 1 <= len(items) <= 100:
                    raise Reject("1 to 100 interactions")
                for item in items:
                    check_interaction(item)
                self._store(items)
                return 202, {"count": len(items), "status": "accepted", "message": ""}
            return 404, {"error": "not_found", "message": path, "details": {}}
        except Reject as exc:
            return 400, {"error": "invalid_request", "message": str(exc), "details": {}}

    def _store(self, items: list[dict[str, Any]]) -> None:
        with self._lock:
            for item in items:
                # Like the deployed worker (D1 enforces the foreign key): the session must exist.
                if item["session_id"] not in self.sessions:
                    raise Reject(f"FOREIGN KEY: session {item['session_id']} was never started")
            self.interactions.extend(items)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the listen backlog (default 5): an export opens twenty connections at once
