"""Run blocking work (database, files, engines) off the gevent hub."""

from __future__ import annotations

from typing import Any, Callable

import gevent


def run_blocking(func: Callable, *args: Any, timeout_s: float | None = None) -> Any:
    """Run ``func(*args)`` in gevent's threadpool and wait for it without blocking the hub.

    Raises:
        gevent.Timeout: not done within ``timeout_s`` seconds (the thread runs on).
        Exception: whatever ``func`` raised.
    """
    return gevent.get_hub().threadpool.spawn(func, *args).get(timeout=timeout_s)
