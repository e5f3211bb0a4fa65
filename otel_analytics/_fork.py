"""Forked workers (gunicorn's pre-fork model): what a child must rebuild rather than share."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable


def rebuild_in_forked_child(method: Callable[[], None]) -> None:
    """Call the bound ``method`` in every child forked from now on: threads do not survive a
    fork, and a lock one of them held would stay held. Held weakly: its object may go away."""
    if not hasattr(os, "register_at_fork"):
        return
    reference = weakref.WeakMethod(method)

    def after_in_child() -> None:
        bound = reference()
        if bound is not None:
            bound()

    os.register_at_fork(after_in_child=after_in_child)
