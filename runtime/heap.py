"""Keep full garbage collections from blocking the gevent hub.

A full (generation 2) collection walks every object the collector tracks. After start-up the
server holds about 190,000 of them (modules, the Flask app, SQLAlchemy, the engines' Python side),
and a full collection of that heap took 106 ms on the 2-core benchmark machine: the hub, and so
every call's audio, stood still for that long whenever one ran (``bench/gc_pause.py``,
docs/benchmarks.md). They live as long as the process, so they are moved out of the collector's
reach once start-up is done (``gc.freeze``); later collections scan only what calls allocate.
"""

from __future__ import annotations

import gc


def freeze_start_up_heap() -> int:
    """Collect once, then freeze every object still alive (call once, after the app is built).

    Returns:
        The number of objects now frozen (``gc.get_freeze_count()``).
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
