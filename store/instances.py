"""Which server processes sharing the call store are gone (pure: no I/O, clocks passed in).

Each process registers a row in ``instances`` and refreshes its ``heartbeat_at`` every
``INSTANCE_HEARTBEAT_S``. Another process may end the open calls of a gone process and file its
recording folders, never those of a live one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

STALE_HEARTBEATS = 3
"""A process whose heartbeat is older than this many intervals is taken as gone."""


@dataclass(frozen=True)
class Instance:
    """One registered server process.

    Attributes:
        instance_id: random hex id, new at every start of a process.
        hostname: ``socket.gethostname()`` of its machine.
        pid: its process id on that machine.
        started_at: when it registered (timezone-aware UTC).
        heartbeat_at: when it last said it was alive (timezone-aware UTC).
    """

    instance_id: str
    hostname: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime


def is_gone(
    instance: Instance,
    *,
    now: datetime,
    heartbeat_s: float,
    own_id: str,
    own_hostname: str,
    own_pid: int,
    pid_alive: Callable[[int], bool],
) -> bool:
    """True when ``instance`` is no longer running, as seen by the process ``own_id``.

    On this machine the process table decides: gone when its pid is dead, or is our own pid
    under another id (a restarted container reuses pids). A live pid counts as alive even
    with a stale heartbeat: a database outage stops every heartbeat, and the process that comes
    first after it must not take the calls of one that is still recording them. On another
    machine only the heartbeat tells: gone when older than ``STALE_HEARTBEATS`` intervals.

    Args:
        instance: the row to judge.
        now: the current time (timezone-aware).
        heartbeat_s: ``INSTANCE_HEARTBEAT_S``, s.
        own_id, own_hostname, own_pid: the judging process.
        pid_alive: tells whether a pid of this machine runs (``os.kill(pid, 0)``).
    """
    if instance.instance_id == own_id:
        return False
    if instance.hostname == own_hostname:
        return instance.pid == own_pid or not pid_alive(instance.pid)
    return now - instance.heartbeat_at > timedelta(seconds=STALE_HEARTBEATS * heartbeat_s)
