"""This process's registration among those sharing the store, and its heartbeat (gevent shell).

``register`` (blocking, at start-up, before any call) adds the process to ``instances``;
``start`` spawns a greenlet that refreshes ``heartbeat_at`` every ``INSTANCE_HEARTBEAT_S`` and,
every ``STALE_HEARTBEATS`` beats, files the calls of processes that died meanwhile
(``runtime.recovery``), all store and file work in gevent's threadpool. A failed beat (the
store is down) is logged once per outage; the loop goes on.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

import gevent

from runtime.call_filer import run_quietly
from runtime.recovery import Recovery, recover_orphans
from store.instances import STALE_HEARTBEATS
from store.records import whole_ms

log = logging.getLogger(__name__)


class InstanceKeeper:
    """Keep ``services.instance_id`` registered and alive in the store.

    Args:
        services: the process's ``Services`` (store, settings, instance id).
    """

    def __init__(self, services) -> None:
        self.services = services
        self.heartbeat_s: float = services.settings.instance_heartbeat_s
        self.hostname = socket.gethostname()
        self.started_at = _now()
        self._loop: gevent.Greenlet | None = None
        self._failing = False

    def beat(self) -> None:
        """Register, or refresh the heartbeat (blocking).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the store is unreachable.
        """
        self.services.store.beat_instance(
            self.services.instance_id, hostname=self.hostname, pid=os.getpid(),
            started_at=whole_ms(self.started_at), now=whole_ms(_now()),
        )

    register = beat

    def recover(self) -> Recovery:
        """File the folders and end the calls of gone processes (blocking; see ``runtime.recovery``).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the store is unreachable.
        """
        settings = self.services.settings
        return recover_orphans(
            self.services.store, Path(settings.recordings_dir), in_database=settings.recordings_store == "database",
            instance_id=self.services.instance_id, hostname=self.hostname, heartbeat_s=self.heartbeat_s, now=_now(),
        )

    def start(self) -> None:
        """Start the heartbeat greenlet (once)."""
        if self._loop is None:
            self._loop = gevent.spawn(self._run)

    def stop(self) -> None:
        """Stop the heartbeat greenlet."""
        if self._loop is not None:
            self._loop.kill(block=False)

    def _run(self) -> None:
        beats = 0
        while True:
            gevent.sleep(self.heartbeat_s)
            beats += 1
            try:
                run_quietly(self.beat)
                if beats % STALE_HEARTBEATS == 0:
                    run_quietly(self.recover)
            except Exception as exc:
                if not self._failing:
                    log.warning("instance heartbeat failed; retrying every %.0f s", self.heartbeat_s, exc_info=exc)
                self._failing = True
                continue
            if self._failing:
                log.info("instance heartbeat restored")
                self._failing = False


def _now() -> datetime:
    return datetime.now(timezone.utc)
