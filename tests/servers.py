"""Real uvicorn servers on 127.0.0.1 for tests, each in its own thread and event loop."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn


class ServerThread:
    def __init__(self, app: Any, **config: Any) -> None:
        config.setdefault("log_level", "warning")
        config.setdefault("lifespan", "off")
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, **config))
        self._thread = threading.Thread(target=self.server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def close(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
