"""The tracker contract's ranges, checked where values enter the package.

The tracker refuses a count over 2**53, a duration over 10**12 ms or a timestamp outside
2000-2099, and refuses the whole interaction with it. So every count, cost, duration and time
read from an answer, a decorator or ``track_*`` is checked here on the way in: a value out of
range is dropped (and the interaction flagged), and the rest is kept and sent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

MAX_COUNT: Final = 2**53
"""The largest token count, operation count or cost in micro-cents the contract takes (JSON's
largest exact integer)."""
MAX_DURATION_MS: Final = 1e12
MAX_ID_LENGTH: Final = 256
EARLIEST_NS: Final = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000
LATEST_NS: Final = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000


def count(value: Any, minimum: int = 0) -> int | None:
    """``value`` if it is a count the contract takes (an int, not a bool, in range), else ``None``."""
    if type(value) is int and minimum <= value <= MAX_COUNT:
        return value
    return None


def in_time_range(ns: int) -> bool:
    """Whether a time (ns since the epoch) is one the contract's timestamps can carry."""
    return EARLIEST_NS <= ns < LATEST_NS
