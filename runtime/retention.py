"""``RETENTION_DAYS``: delete calls, with their recordings, some days after they ended (gevent shell).

The deleting is the store's (``CallStore.delete_calls_ended_before``, blocking); this module runs
it every ``RETENTION_INTERVAL_S`` in a greenlet of the serving process, through ``run_blocking``,
so the hub keeps serving calls. A call still going on has no end time and is never deleted.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from typing import Any

import gevent
from gevent import monkey

from runtime.blocking import run_blocking

log = logging.getLogger(__name__)

RETENTION_INTERVAL_S = 3600.0
_job: tuple[int, gevent.Greenlet] | None = None  # (pid, greenlet): one per process


def delete_expired(store: Any, retention_days: int, recordings_root: str, now: datetime) -> list[str]:
    """Delete the calls that ended more than ``retention_days`` days before ``now`` (blocking).

    Args:
        store: the ``CallStore``.
        retention_days: at least 1 (0 means keep everything: nothing is deleted).
        recordings_root: ``RECORDINGS_DIR``: only files inside it are deleted.
        now: an aware datetime.

    Returns:
        The deleted call SIDs.
    """
    if retention_days <= 0:
        return []
    return store.delete_calls_ended_before(now - timedelta(days=retention_days), recordings_root)


def start(services: Any, interval_s: float = RETENTION_INTERVAL_S) -> gevent.Greenlet:
    """Spawn the greenlet that runs :func:`delete_expired` now, then every ``interval_s`` seconds.

    A failed run (database unreachable, a file that cannot be deleted) is logged and retried at
    the next interval.
    """

    def loop() -> None:
        while True:
            settings = services.settings
            try:
                deleted = run_blocking(delete_expired, services.store, settings.retention_days,
                                       settings.recordings_dir, datetime.now(timezone.utc))
                if deleted:
                    log.info("retention: deleted %d call(s) that ended over %d days ago", len(deleted), settings.retention_days)
            except Exception:
                log.exception("retention: deleting old calls failed; trying again in %.0f s", interval_s)
            gevent.sleep(interval_s)

    return gevent.spawn(loop)


def start_for_server(services: Any) -> gevent.Greenlet | None:
    """Start the retention job once per serving process when ``RETENTION_DAYS`` > 0 (``create_app`` calls it).

    Like the hub monitor, it starts only in a gevent-patched process (``python app.py``,
    ``gunicorn -k gevent``), not in a test run that builds apps.
    """
    global _job
    if services.settings.retention_days <= 0 or not (monkey.is_module_patched("socket") and monkey.is_module_patched("time")):
        return None
    if _job is not None and _job[0] == os.getpid() and not _job[1].dead:
        return _job[1]
    _job = (os.getpid(), start(services))
    log.info("retention: calls are deleted %d days after they end", services.settings.retention_days)
    return _job[1]
