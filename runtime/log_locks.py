"""Logging that native threads share safely with the gevent hub.

Under gevent's monkey-patching every logging handler's lock is a gevent lock, and native threads
(the whisper engine threads, gevent's threadpool threads that run files, the database and the
responder) contending for it can park forever: the wake-up from one thread to another is lost
(gevent/gevent#1698). Measured here with gevent 26.9: two threadpool threads logging 1,000 lines
each hung in 3 runs of 3, and a server whose two engine threads logged at once hung at start-up in
3 starts of 10 (``tests/test_log_locks.py`` keeps the first). A native ``_thread.RLock`` instead
blocks only the OS thread that waits, for the microseconds a line takes to write. That is safe on
the hub too because a handler's ``emit`` writes to a plain stream and never switches greenlets
while it holds the lock.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable


def _native_rlock_factory() -> Callable[[], Any]:
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        return monkey.get_original("_thread", "RLock")
    import _thread

    return _thread.RLock


def use_native_logging_locks(logger: logging.Logger | None = None) -> int:
    """Give ``logger``'s handlers (default: the root logger's) and logging's module lock native RLocks.

    Call after the handlers are configured (``logging.basicConfig``); handlers added later keep
    their own locks.

    Returns:
        How many handlers got a native lock.
    """
    native_rlock = _native_rlock_factory()
    handlers = (logger or logging.getLogger()).handlers
    for handler in handlers:
        handler.lock = native_rlock()
    # Taken on a logger's first use of a level (its cache) and by configuration calls.
    logging._lock = native_rlock()  # type: ignore[attr-defined]
    return len(handlers)
