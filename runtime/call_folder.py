"""A call's recording folder as the durable state of its end (blocking file and store I/O: run
it in a thread; from gevent code through ``runtime.blocking.run_blocking``).

Besides the WAV files and ``audio.recording``'s ``finalized`` marker (the WAVs are complete),
the folder ``<RECORDINGS_DIR>/<call SID>/`` holds:

* ``owner``: the id of the server process that records the call (``Services.instance_id``),
  written when the folder is made: another process touches the folder only once that one is gone.
* ``call.json``: the call record (``CallRecord.to_json()`` plus ``mode`` and ``instance_id``),
  rewritten (temp file + ``os.replace``) whenever it changed, before each database save. Its
  ``ended_at`` is set at the end of the call: then it is the final record.
* ``filed``: written once the store has the final record and every recording. A folder with a
  final record and no ``filed`` is *pending*: the store was unreachable when the call ended.

In ``RECORDINGS_STORE=database`` mode the folder is deleted once filed.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from audio.recording import FINALIZED_MARKER, CallRecorder, RecordingFile

OWNER_FILE = "owner"
CALL_FILE = "call.json"
FILED_MARKER = "filed"


def open_folder(directory: Path, instance_id: str) -> None:
    """Make the folder of a new call, owned by ``instance_id``; forget a previous stream's end.

    Raises:
        OSError: the folder or its files cannot be written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomic(directory / OWNER_FILE, instance_id.encode())
    (directory / FILED_MARKER).unlink(missing_ok=True)
    (directory / CALL_FILE).unlink(missing_ok=True)


def owner(directory: Path) -> str | None:
    """The instance id in the folder's ``owner`` file, or ``None`` (a folder from before owners)."""
    try:
        return (directory / OWNER_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def write_record(directory: Path, record: dict[str, Any], *, durable: bool = False) -> None:
    """Replace ``call.json`` with ``record`` at once (never half-written).

    Args:
        durable: fsync before the rename (the final record), so a power cut keeps it.

    Raises:
        OSError: it cannot be written (the folder is gone, the disk is full).
    """
    _write_atomic(directory / CALL_FILE, json.dumps(record, sort_keys=True).encode(), durable=durable)


def read_record(directory: Path) -> dict[str, Any] | None:
    """The record in ``call.json``, or ``None`` when there is none or it does not parse."""
    try:
        return json.loads((directory / CALL_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None


def is_filed(directory: Path) -> bool:
    """True when the store has the call's final record and recordings (or the folder is gone)."""
    return not directory.is_dir() or (directory / FILED_MARKER).exists()


def is_pending(directory: Path) -> bool:
    """True when the call ended (final ``call.json``) but is not filed yet."""
    record = read_record(directory)
    return record is not None and record.get("ended_at") is not None and not is_filed(directory)


def file_call(
    store, record: dict[str, Any], directory: Path | None, in_database: bool, files: list[RecordingFile] | None = None
) -> None:
    """Put a finished call in the store: its final record, then every recording, then ``filed``.

    Idempotent (upserts): when the store fails half-way, calling it again finishes the job.

    Args:
        store: the ``CallStore``.
        record: the final record (``ended_at`` set).
        directory: the call's folder, or ``None`` when it has none (its recorder never started).
        in_database: ``RECORDINGS_STORE == "database"``: the bytes go into the store and the
            folder is deleted.
        files: the recordings ``CallRecorder.close`` returned; ``None``: read from the folder
            (``CallRecorder.recover`` repairs an unfinalized one).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the store failed; nothing is marked filed.
        OSError, audio.errors.AudioFormatError: the folder cannot be read.
    """
    from runtime.call_keeper import file_recordings  # its path checks stay in one place

    store.save_call(record)
    if directory is None or not directory.is_dir():
        return
    if files is None:
        files = CallRecorder.recover(directory)
    file_recordings(store, record["call_sid"], files, in_database)
    if directory.is_dir():  # database mode removed it
        (directory / FILED_MARKER).touch()


def recover_folder(store, directory: Path, in_database: bool, *, fallback_end: datetime) -> dict[str, Any]:
    """File the folder of a call whose process is gone (crashed, or stopped with the store down).

    A pending folder is filed with its final record and real end time. A crashed call's end is
    ``started_at`` + the longest recording (media time 0 is the stream's start; the files hold
    everything up to the last flush, about a second before the crash), or ``fallback_end`` when
    that cannot be known; its record is the last ``call.json``, else the store's row.

    Args:
        store: the ``CallStore``.
        directory: the call's folder.
        in_database: ``RECORDINGS_STORE == "database"``.
        fallback_end: timezone-aware end time when the recordings do not tell one.

    Returns:
        The record filed (``ended_at`` ``None`` when a folder from an older version whose call
        is no longer stored was only marked filed).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the store failed (the folder stays as it was, to retry).
        OSError, audio.errors.AudioFormatError: the folder cannot be read or repaired.
    """
    legacy_filed = (directory / FINALIZED_MARKER).exists()  # before recover() writes it
    files = CallRecorder.recover(directory)
    record = read_record(directory)
    if record is None:  # a folder from before call.json, or a crash before the first write
        stored = store.get_call(directory.name)
        if stored is None and legacy_filed:  # filed by an older version, its call since deleted
            (directory / FILED_MARKER).touch()
            return {"call_sid": directory.name, "ended_at": None}
        stored = stored.to_json() if stored is not None else {"call_sid": directory.name}
        record = {k: v for k, v in stored.items() if k not in ("status_events", "recordings")}
    if record.get("ended_at") is None:
        record["ended_at"] = _crash_end(record.get("started_at"), files, fallback_end).isoformat(timespec="milliseconds")
    file_call(store, record, directory, in_database, files)
    return record


def stale(directory: Path, age_s: float) -> bool:
    """True when the folder was last changed more than ``age_s`` seconds ago."""
    try:
        return time.time() - directory.stat().st_mtime > age_s
    except FileNotFoundError:
        return False


def _crash_end(started_at: str | None, files: list[RecordingFile], fallback: datetime) -> datetime:
    if started_at is None or not files:
        return fallback
    return datetime.fromisoformat(started_at) + timedelta(milliseconds=max(item.duration_ms for item in files))


def _write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temporary, path)
