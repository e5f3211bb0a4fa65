"""A loopback HTTP sink for exporter benchmarks: ``python -m bench.sink PORT [DELAY_MS]``.

Answers the tracker's write routes (JSON) and OTLP ``/v1/traces`` (protobuf) at once, or after
``DELAY_MS`` per request, counting what it received; ``GET /count`` returns the counts. It runs in
its own process, so its CPU is never counted as the exporter's.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COUNTS = {"interactions": 0, "requests": 0, "otlp_requests": 0}
LOCK = threading.Lock()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the listen backlog, set before the constructor listens: an export
    # opens twenty connections at once, and the default 5 drops some SYNs (a 1 s retransmit each)


def main() -> None:
    port = int(sys.argv[1])
    delay = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall between

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if delay:
                time.sleep(delay)
            with LOCK:
                COUNTS["requests"] += 1
                if self.path == "/v1/track/interaction/batch":
                    COUNTS["interactions"] += body.count(b'"span_id"')
                elif self.path == "/v1/track/interaction":
                    COUNTS["interactions"] += 1
                elif self.path == "/v1/traces":
                    COUNTS["otlp_requests"] += 1
            if self.path == "/v1/traces":
                self._answer(200, b"", "application/x-protobuf")
            else:
                self._answer(202, b'{"status":"accepted"}', "application/json")

        def do_GET(self) -> None:
            with LOCK:
                payload = json.dumps(COUNTS).encode()
            self._answer(200, payload, "application/json")

        def _answer(self, status: int, payload: bytes, media: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", media)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
