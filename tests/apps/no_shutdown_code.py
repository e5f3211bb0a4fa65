"""A chat backend with analytics and no shutdown code of its own: what a server's stop must flush.

Served by uvicorn or hypercorn in a separate process by ``tests/test_shutdown.py``; exporters and
the flush timeout come from the environment.
"""

from __future__ import annotations

import otel_analytics as oa
from tests.chat_apps import build

oa.configure()
app = oa.AnalyticsMiddleware(build())
