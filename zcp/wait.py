"""Polling: the one ``wait_until`` every waiting loop in the project uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(fn: Callable[[], T], timeout: float = 40.0, interval: float = 0.2) -> T:
    """Call ``fn`` until it returns something true or ``timeout`` seconds pass; its last result
    (so a caller can tell what it last saw). ``fn`` is called at least once, and once more at
    the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            return result
        time.sleep(min(interval, left))
