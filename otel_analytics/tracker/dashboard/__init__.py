"""The local tracker's web dashboard, served by the tracker itself at ``/`` (same process, same
port): overview, sessions, a session, users; exports; live refresh; sign-in with the tracker's
tokens. Built on Jinja2 templates through Starlette and Chart.js shipped in the package."""

from .access import Access, SecurityHeaders
from .views import routes

__all__ = ["Access", "SecurityHeaders", "routes"]
