"""File the calls of server processes that are gone, and end their open calls (blocking).

Run at start-up (``app.recover_unfinished_calls``) and then every few heartbeats by
``runtime.instance_keeper``, so the calls of a process that died next to live ones are filed
without waiting for a restart. Several processes may share the store and ``RECORDINGS_DIR``
(gunicorn workers, dynos): a folder is touched only when its ``owner`` is this process or a gone
one (``store.instances.is_gone``), and a ``claim`` file keeps two live processes from filing the
same folder at once.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from runtime import call_folder
from store.instances import STALE_HEARTBEATS, is_gone
from store.records import whole_ms

log = logging.getLogger(__name__)

CLAIM_FILE = "claim"


@dataclass
class Recovery:
    """What one pass did: call SIDs filed from folders, calls marked ended, gone processes."""

    filed: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # folders left for the next pass


def recover_orphans(
    store,
    root: Path,
    *,
    in_database: bool,
    instance_id: str,
    hostname: str,
    heartbeat_s: float,
    now: datetime,
) -> Recovery:
    """File the folders and end the open calls of gone processes; leave live processes' alone.

    Args:
        store: the ``CallStore``.
        root: ``RECORDINGS_DIR``.
        in_database: ``RECORDINGS_STORE == "database"``.
        instance_id: this process (registered with ``beat_instance`` before this runs).
        hostname: ``socket.gethostname()``.
        heartbeat_s: ``INSTANCE_HEARTBEAT_S``, s.
        now: the current time, timezone-aware.

    Returns:
        What was done. A folder that fails (store or disk) is logged and left for next time.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the store cannot be read or the calls not ended.
    """
    # Folders before processes: a folder is made after its process registered, so its owner is listed.
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    instances = store.instances()
    gone = {
        i.instance_id: i
        for i in instances
        if is_gone(i, now=now, heartbeat_s=heartbeat_s, own_id=instance_id, own_hostname=hostname,
                   own_pid=os.getpid(), pid_alive=_pid_alive)
    }
    live = {i.instance_id for i in instances if i.instance_id not in gone} | {instance_id}
    result = Recovery(gone=sorted(gone))
    for directory in folders:
        if call_folder.is_filed(directory):
            continue
        owner = call_folder.owner(directory)
        if owner in live:
            continue
        if owner is None and not call_folder.stale(directory, STALE_HEARTBEATS * heartbeat_s):
            continue  # an owner file is being written, or a process from before owners is recording
        if not _claim(directory, instance_id, live):
            continue
        fallback = gone[owner].heartbeat_at if owner in gone else now
        try:
            record = call_folder.recover_folder(store, directory, in_database, fallback_end=fallback)
        except Exception:
            log.exception("could not file the call in %s (its process %s is gone); will retry", directory, owner)
            result.failed.append(directory.name)
            continue
        result.filed.append(record["call_sid"])
        log.warning("filed call %s left by process %s (ended %s)", record["call_sid"], owner or "?", record["ended_at"])
    last_seen = {key: whole_ms(i.heartbeat_at) for key, i in gone.items()}
    result.ended = store.mark_unfinished_calls_ended(whole_ms(now), keep_instances=live, last_seen=last_seen)
    if result.ended:
        log.warning("marked %d call(s) of gone processes as ended: %s", len(result.ended), ", ".join(result.ended[:10]))
    if gone:
        store.forget_instances(gone)
    return result


def _claim(directory: Path, instance_id: str, live: set[str]) -> bool:
    """Take the folder for this process unless another live process has taken it."""
    path = directory / CLAIM_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        try:
            holder = path.read_text().strip()
        except FileNotFoundError:
            holder = ""
        if holder != instance_id and holder in live:
            return False
        path.write_text(instance_id)  # its holder died mid-way: take over
        return True
    with os.fdopen(fd, "w") as handle:
        handle.write(instance_id)
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
