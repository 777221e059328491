"""CallStore: calls, turns, stream status events and recordings in the database (blocking).

Every method is one short transaction on its own ``Session``, so one ``CallStore`` (and its
engine) is shared by all threads. From gevent code, call it through the threadpool: the
database drivers block the OS thread.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from types import MappingProxyType
from typing import Any

from collections.abc import Collection, Mapping

from sqlalchemy import case, delete, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from store.database import WRITE_OPTION
from store.instances import Instance
from store.models import CallRow, InstanceRow, RecordingRow, StatusEventRow, TurnRow, WaveformRow
from store.records import CallSummary, RecordingSummary, StatusEvent, StoredCall, StoredTurn
from store.recording_io import RecordingReader, file_reader, remove_recording_files

log = logging.getLogger(__name__)

RECORDING_KINDS = ("stereo", "inbound", "outbound")

# Turn keys with a column of their own; any other key goes to the ``extra`` JSON column.
_TURN_BASE_KEYS = ("speaker", "text", "start_ms", "end_ms")
_TURN_OPTIONAL_KEYS = ("dtmf", "error", "interrupted", "heard", "latency_ms")

# Rows per UPDATE … WHERE call_sid IN (…): old SQLite builds allow 999 bound parameters.
_IN_CHUNK = 500
_MAX_OFFSET = 2**62


@dataclass(frozen=True)
class Recording:
    """Metadata of one stored recording.

    Attributes:
        call_sid: the call (``CA…``).
        kind: ``"stereo"``, ``"inbound"`` or ``"outbound"``.
        duration_ms: length of the audio, ms.
        size_bytes: size of the file, bytes.
        content_type: MIME type of the bytes, e.g. ``"audio/wav"``.
        path: the file holding the bytes, or ``None`` when they are in the database.
        in_database: True when the bytes are in the database; ``CallStore.recording_bytes``
            returns them either way.
    """

    call_sid: str
    kind: str
    duration_ms: int
    size_bytes: int
    content_type: str
    path: str | None
    in_database: bool


class CallStore:
    """The call history in a SQLite or PostgreSQL database (schema from ``upgrade_schema``).

    Thread-safe: each method runs one short transaction on a session of its own. Times come
    in as ISO 8601 strings in ``save_call``'s record and as aware ``datetime`` elsewhere; they
    are stored as UTC timestamps and read back as aware UTC ``datetime`` in the records of
    ``store.records`` (a time without offset is taken as UTC). Their ``to_json`` gives
    ``YYYY-MM-DDTHH:MM:SS.mmm+00:00`` (microseconds when the value has them), so a UTC time
    written by the app in ms comes back unchanged.

    Args:
        engine: from ``store.database.make_engine``.

    Raises:
        NotImplementedError: the engine is neither SQLite nor PostgreSQL (upserts use their
            ``INSERT … ON CONFLICT``).
    """

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect.name
        if dialect == "sqlite":
            self._insert = sqlite.insert
        elif dialect == "postgresql":
            self._insert = postgresql.insert
        else:
            raise NotImplementedError(f"the call store supports SQLite and PostgreSQL, not {dialect}")
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # -- writes ---------------------------------------------------------------------------------

    def save_call(self, record: dict[str, Any]) -> None:
        """Insert or replace one call and its turns (one transaction).

        Args:
            record: the API shape (``CallRecord.to_json()``) plus ``mode``: ``call_sid``,
                ``stream_sid``, ``from``, ``to`` (any length: SIP addresses too),
                ``started_at``/``ended_at`` (ISO 8601 or ``None``), ``mode`` (``"conversation"`` |
                ``"fork"``), ``instance_id`` (the process keeping the call), ``direction`` and
                ``answered_by`` (``None`` keeps the stored value: they may be noted elsewhere),
                ``transferred_to``, and ``turns``: the FULL
                current list, which replaces the stored one. Each turn: ``speaker``, ``text``,
                ``start_ms``, ``end_ms`` (ms, media clock; ``end_ms`` may be ``None``) and
                optional ``dtmf``, ``error``, ``interrupted``, ``heard``, ``latency_ms`` (a dict
                of stage → ms, its ``total`` also kept in a column); other keys are kept as
                JSON. Keys whose value is ``None`` are not kept. Missing call keys are stored
                as NULL (they replace what was stored).

        Raises:
            ValueError: no ``call_sid``, a time that is not ISO 8601, or a turn without
                ``speaker``/``text``/``start_ms``.
        """
        call_sid = _require_sid(record.get("call_sid"))
        values = {
            "call_sid": call_sid,
            "stream_sid": record.get("stream_sid"),
            "from_number": record.get("from"),
            "to_number": record.get("to"),
            "started_at": _parse_time(record.get("started_at"), "started_at"),
            "ended_at": _parse_time(record.get("ended_at"), "ended_at"),
            "mode": record.get("mode"),
            "instance_id": record.get("instance_id"),
            "direction": record.get("direction"),
            "answered_by": record.get("answered_by"),
            "transferred_to": record.get("transferred_to"),
        }
        turns = [_turn_row(call_sid, position, turn) for position, turn in enumerate(record.get("turns") or [])]
        upsert = self._insert(CallRow.__table__).values(values)
        # These may come from elsewhere (POST /api/calls, an AMD callback in another process):
        # a record that does not know them yet keeps what is stored.
        kept = {name: func.coalesce(upsert.excluded[name], CallRow.__table__.c[name]) for name in _KEPT_WHEN_UNKNOWN}
        upsert = upsert.on_conflict_do_update(
            index_elements=["call_sid"], set_={k: v for k, v in values.items() if k != "call_sid"} | kept
        )
        with self._write() as session:
            session.execute(upsert)
            session.execute(delete(TurnRow.__table__).where(TurnRow.call_sid == call_sid))
            if turns:
                session.execute(TurnRow.__table__.insert(), turns)

    def add_status_event(
        self,
        call_sid: str,
        *,
        stream_sid: str | None,
        event: str,
        error: str | None,
        timestamp: str | None,
        name: str | None = None,
    ) -> None:
        """Append one Twilio stream ``statusCallback`` request to the call's events.

        The callback may arrive before the call is saved: a placeholder call row with only
        ``call_sid`` is created, and ``save_call`` fills it in later.

        Args:
            call_sid: Twilio's ``CallSid``.
            stream_sid: ``StreamSid``.
            event: ``StreamEvent``: ``stream-started``, ``stream-stopped`` or ``stream-error``.
            error: ``StreamError`` (set with ``stream-error``).
            timestamp: ``Timestamp`` (ISO 8601, kept verbatim).
            name: ``StreamName``.

        Raises:
            ValueError: empty ``call_sid`` or ``event``.
        """
        call_sid = _require_sid(call_sid)
        if not event:
            raise ValueError("a status event needs its StreamEvent")
        with self._write() as session:
            self._ensure_call(session, call_sid)
            session.execute(
                StatusEventRow.__table__.insert().values(
                    call_sid=call_sid, stream_sid=stream_sid, event=event, error=error, timestamp=timestamp, name=name
                )
            )

    def note_call(self, call_sid: str, **fields: str | datetime | None) -> None:
        """Set some of a call's ``direction``, ``answered_by``, ``from`` and ``to``
        (``from_number``/``to_number``) and ``started_at`` (an aware ``datetime``: when an outbound
        call was placed, until its stream starts), creating a placeholder row if the call is not
        saved yet: an outbound call when it is placed, an AMD result.

        Raises:
            ValueError: an empty ``call_sid`` or an unknown field.
            TypeError: ``started_at`` is not a ``datetime``.
        """
        call_sid = _require_sid(call_sid)
        unknown = set(fields) - _NOTED_FIELDS
        if unknown:
            raise ValueError(f"not a noted call field: {', '.join(sorted(unknown))}")
        if "started_at" in fields:
            fields["started_at"] = _require_time(fields["started_at"], "started_at")
        upsert = self._insert(CallRow.__table__).values(call_sid=call_sid, **fields)
        if fields:
            upsert = upsert.on_conflict_do_update(index_elements=["call_sid"], set_=fields)
        else:
            upsert = upsert.on_conflict_do_nothing(index_elements=["call_sid"])
        with self._write() as session:
            session.execute(upsert)

    def answered_by(self, call_sid: str) -> str | None:
        """The call's stored ``answered_by`` (Twilio's AMD result), or ``None``."""
        with self._read() as session:
            return session.scalar(select(CallRow.answered_by).where(CallRow.call_sid == call_sid))

    def save_recording(
        self,
        call_sid: str,
        kind: str,
        *,
        duration_ms: int,
        size_bytes: int,
        content_type: str = "audio/wav",
        path: str | os.PathLike[str] | None = None,
        data: bytes | None = None,
    ) -> None:
        """Insert or replace the metadata (and maybe the bytes) of one recording of a call.

        Give exactly one of ``path`` (the file stays where it is; only its path is stored) and
        ``data`` (the bytes are stored in the database, for platforms whose filesystem is
        wiped at restart). A placeholder call row is created if the call is not saved yet.

        Args:
            call_sid: the call (``CA…``).
            kind: ``"stereo"``, ``"inbound"`` or ``"outbound"``; one recording per kind.
            duration_ms: length of the audio, ms.
            size_bytes: size of the file, bytes (``len(data)`` when ``data`` is given).
            content_type: MIME type of the bytes.
            path: the file holding the recording.
            data: the recording's bytes.

        Raises:
            ValueError: unknown ``kind``, both or neither of ``path``/``data``, a negative
                duration or size, or ``size_bytes != len(data)``.
        """
        call_sid = _require_sid(call_sid)
        if kind not in RECORDING_KINDS:
            raise ValueError(f"recording kind must be one of {RECORDING_KINDS}, not {kind!r}")
        if (path is None) == (data is None):
            raise ValueError("give exactly one of path and data")
        if duration_ms < 0 or size_bytes < 0:
            raise ValueError("duration_ms and size_bytes must be >= 0")
        if data is not None and len(data) != size_bytes:
            raise ValueError(f"size_bytes is {size_bytes} but data has {len(data)} bytes")
        values = {
            "call_sid": call_sid,
            "kind": kind,
            "duration_ms": int(duration_ms),
            "size_bytes": int(size_bytes),
            "content_type": content_type,
            "path": os.fspath(path) if path is not None else None,
            "data": bytes(data) if data is not None else None,
        }
        upsert = self._insert(RecordingRow.__table__).values(values)
        upsert = upsert.on_conflict_do_update(
            index_elements=["call_sid", "kind"],
            set_={k: v for k, v in values.items() if k not in ("call_sid", "kind")},
        )
        with self._write() as session:
            self._ensure_call(session, call_sid)
            session.execute(upsert)

    def end_call(self, call_sid: str, ended_at: datetime) -> bool:
        """Set ``ended_at`` of one call if it has none (a call filed after its process died).

        Args:
            call_sid: the call.
            ended_at: the time to record (aware; naive is taken as UTC); a time before the
                call's ``started_at`` is raised to it.

        Returns:
            True if the call was open and is now ended; False if it is ended already or unknown.

        Raises:
            TypeError: ``ended_at`` is not a ``datetime``.
        """
        when = _require_time(ended_at, "ended_at")
        with self._write() as session:
            result = session.execute(
                update(CallRow.__table__)
                .where(CallRow.call_sid == call_sid, CallRow.ended_at.is_(None))
                .values(ended_at=_not_before_start(when))
            )
        return result.rowcount > 0

    def mark_unfinished_calls_ended(
        self,
        ended_at: datetime,
        *,
        keep_instances: Collection[str] = (),
        last_seen: Mapping[str, datetime] | None = None,
    ) -> list[str]:
        """Set ``ended_at`` on the calls left open by processes that are gone (at start-up).

        Caution: several processes may share one database (gunicorn workers, several dynos).
        Pass in ``keep_instances`` every process still alive (``store.instances.is_gone``),
        this one included: their calls are in progress and must stay open. A call without
        ``instance_id`` was written before processes had one, or is a status event's
        placeholder whose call never started, and is ended too.

        Args:
            ended_at: the time to record when nothing better is known (aware ``datetime``).
            keep_instances: ids of live processes whose calls are left alone.
            last_seen: instance id → its last heartbeat (aware ``datetime``): the calls of that
                process end then (it died within one heartbeat interval after). A time before a
                call's ``started_at`` is raised to it.

        Returns:
            The call SIDs that were marked, sorted.

        Raises:
            TypeError: a time is not a ``datetime``.
        """
        fallback = _require_time(ended_at, "ended_at")
        seen = {key: _require_time(value, "last_seen") for key, value in (last_seen or {}).items()}
        keep = list(keep_instances)
        with self._write() as session:
            query = select(CallRow.call_sid, CallRow.instance_id).where(CallRow.ended_at.is_(None))
            if keep:
                query = query.where((CallRow.instance_id.is_(None)) | CallRow.instance_id.not_in(keep))
            rows = session.execute(query.order_by(CallRow.call_sid).with_for_update()).all()
            by_time: dict[datetime, list[str]] = {}
            for call_sid, instance_id in rows:
                by_time.setdefault(seen.get(instance_id) or fallback, []).append(call_sid)
            for when, call_sids in by_time.items():
                for start in range(0, len(call_sids), _IN_CHUNK):
                    chunk = call_sids[start : start + _IN_CHUNK]
                    session.execute(
                        update(CallRow.__table__)
                        .where(CallRow.call_sid.in_(chunk), CallRow.ended_at.is_(None))
                        .values(ended_at=_not_before_start(when))
                    )
        return sorted(call_sid for call_sid, _ in rows)

    # -- server processes -----------------------------------------------------------------------

    def beat_instance(self, instance_id: str, *, hostname: str, pid: int, started_at: datetime, now: datetime) -> None:
        """Register a server process or refresh its heartbeat (an upsert: a row pruned by
        another process while this one could not reach the database comes back).

        Args:
            instance_id: the process's id (at most 64 characters).
            hostname: its machine's host name.
            pid: its process id.
            started_at: when it started (aware ``datetime``).
            now: the heartbeat time (aware ``datetime``).

        Raises:
            TypeError: a time is not a ``datetime``.
        """
        values = {
            "instance_id": _require_sid(instance_id),
            "hostname": hostname,
            "pid": int(pid),
            "started_at": _require_time(started_at, "started_at"),
            "heartbeat_at": _require_time(now, "now"),
        }
        upsert = self._insert(InstanceRow.__table__).values(values)
        upsert = upsert.on_conflict_do_update(index_elements=["instance_id"], set_={"heartbeat_at": values["heartbeat_at"]})
        with self._write() as session:
            session.execute(upsert)

    def instances(self) -> list[Instance]:
        """Every registered server process, by ``started_at``."""
        with self._read() as session:
            rows = session.execute(select(InstanceRow.__table__).order_by(InstanceRow.started_at)).mappings().all()
        return [Instance(**row) for row in rows]

    def forget_instances(self, instance_ids: Collection[str]) -> None:
        """Delete the rows of gone processes (their calls and folders have been dealt with)."""
        ids = list(instance_ids)
        with self._write() as session:
            for start in range(0, len(ids), _IN_CHUNK):
                session.execute(delete(InstanceRow.__table__).where(InstanceRow.instance_id.in_(ids[start : start + _IN_CHUNK])))

    # -- reads ----------------------------------------------------------------------------------

    def get_call(self, call_sid: str) -> StoredCall | None:
        """Return one call, or ``None`` if it is not stored.

        Returns:
            The call (times aware UTC), its ``turns`` ordered by ``start_ms`` then position in
            the saved list, ``status_events`` in arrival order and ``recordings`` ordered by
            kind; ``StoredCall.to_json()`` is the API shape.
        """
        with self._read() as session:
            call = session.execute(select(CallRow.__table__).where(CallRow.call_sid == call_sid)).mappings().first()
            if call is None:
                return None
            turns = session.execute(
                select(TurnRow.__table__)
                .where(TurnRow.call_sid == call_sid)
                .order_by(TurnRow.start_ms, TurnRow.position)
            ).mappings()
            stored_turns = tuple(_stored_turn(row) for row in turns)
            events = session.execute(
                select(StatusEventRow.event, StatusEventRow.error, StatusEventRow.timestamp, StatusEventRow.name)
                .where(StatusEventRow.call_sid == call_sid)
                .order_by(StatusEventRow.id)
            ).mappings()
            status_events = tuple(StatusEvent(**row) for row in events)
            recordings = session.execute(
                select(RecordingRow.kind, RecordingRow.duration_ms, RecordingRow.size_bytes)
                .where(RecordingRow.call_sid == call_sid)
                .order_by(RecordingRow.kind)
            ).mappings()
            recording_summaries = tuple(RecordingSummary(**row) for row in recordings)
        return StoredCall(
            call_sid=call["call_sid"],
            stream_sid=call["stream_sid"],
            from_number=call["from_number"],
            to_number=call["to_number"],
            started_at=call["started_at"],
            ended_at=call["ended_at"],
            mode=call["mode"],
            direction=call["direction"],
            answered_by=call["answered_by"],
            transferred_to=call["transferred_to"],
            turns=stored_turns,
            status_events=status_events,
            recordings=recording_summaries,
        )

    def list_calls(self, *, page: int = 1, per_page: int = 20) -> tuple[list[CallSummary], int]:
        """Return one page of call summaries, most recent first, and the number of calls.

        Order: ``started_at`` descending, calls without ``started_at`` last, then ``call_sid``.

        Args:
            page: page number, from 1.
            per_page: calls per page, from 1.

        Returns:
            (summaries, total): ``CallSummary`` records (``duration_ms`` is ``ended_at -
            started_at`` in ms, or ``None``). A page past the end is an empty list.

        Raises:
            ValueError: ``page`` or ``per_page`` below 1, or an offset past ``2**62`` calls.
        """
        if page < 1 or per_page < 1:
            raise ValueError("page and per_page must be >= 1")
        if page * per_page > _MAX_OFFSET:  # the drivers raise OverflowError past a signed 64-bit OFFSET
            raise ValueError(f"page {page} of {per_page} is past any call")
        turn_count = (
            select(func.count())
            .select_from(TurnRow)
            .where(TurnRow.call_sid == CallRow.call_sid)
            .correlate(CallRow)
            .scalar_subquery()
        )
        query = (
            select(
                CallRow.call_sid,
                CallRow.from_number,
                CallRow.to_number,
                CallRow.started_at,
                CallRow.ended_at,
                CallRow.mode,
                CallRow.direction,
                turn_count.label("turn_count"),
            )
            # NULLS LAST spelled portably (SQLite before 3.30 lacks the keyword).
            .order_by(case((CallRow.started_at.is_(None), 1), else_=0), CallRow.started_at.desc(), CallRow.call_sid)
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
        with self._read() as session:
            rows = session.execute(query).mappings().all()
            total = session.scalar(select(func.count()).select_from(CallRow))
        summaries = [
            CallSummary(
                call_sid=row["call_sid"],
                from_number=row["from_number"],
                to_number=row["to_number"],
                started_at=row["started_at"],
                ended_at=row["ended_at"],
                mode=row["mode"],
                direction=row["direction"],
                turn_count=int(row["turn_count"]),
            )
            for row in rows
        ]
        return summaries, int(total or 0)

    def recording(self, call_sid: str, kind: str) -> Recording | None:
        """Return the metadata of one recording (without its bytes), or ``None``."""
        query = select(
            RecordingRow.call_sid,
            RecordingRow.kind,
            RecordingRow.duration_ms,
            RecordingRow.size_bytes,
            RecordingRow.content_type,
            RecordingRow.path,
            RecordingRow.data.is_not(None).label("in_database"),
        ).where(RecordingRow.call_sid == call_sid, RecordingRow.kind == kind)
        with self._read() as session:
            row = session.execute(query).mappings().first()
        if row is None:
            return None
        return Recording(**{**row, "in_database": bool(row["in_database"])})

    def recording_bytes(self, call_sid: str, kind: str) -> bytes | None:
        """Return the bytes of one recording, from the database or its file, whole (for tests and
        tools; the server reads recordings a slice at a time with ``recording_reader``).

        Returns:
            The file's bytes (``content_type`` from ``recording``), or ``None`` when no such
            recording is stored or its file no longer exists (logged as a warning).

        Raises:
            OSError: the file exists but cannot be read.
        """
        reader = self.recording_reader(call_sid, kind)
        if reader is None:
            return None
        with reader:
            return b"".join(reader.chunks())

    def recording_reader(self, call_sid: str, kind: str) -> RecordingReader | None:
        """Open one recording for reading a slice at a time (for downloads and the waveform).

        The bytes are never held whole: from a file, the reader reads the open file; from the
        database, each read is a short query of ``substr(data, offset, size)`` (a slice of the
        ``BYTEA``/``BLOB``), at most ``SLICE_BYTES`` at a time when read with ``chunks()``.

        Returns:
            A seekable binary stream with ``size_bytes`` (close it when done), or ``None`` when
            no such recording is stored or its file no longer exists (logged as a warning).

        Raises:
            OSError: the file exists but cannot be opened.
        """
        query = select(RecordingRow.path, func.length(RecordingRow.data)).where(
            RecordingRow.call_sid == call_sid, RecordingRow.kind == kind
        )
        with self._read() as session:
            row = session.execute(query).first()
        if row is None:
            return None
        path, data_bytes = row
        if path is None:
            return RecordingReader(int(data_bytes or 0), partial(self._recording_slice, call_sid, kind))
        try:
            return file_reader(path)
        except FileNotFoundError:
            log.warning("recording %s/%s: file %s is gone", call_sid, kind, path)
            return None

    def _recording_slice(self, call_sid: str, kind: str, offset: int, size: int) -> bytes:
        """``size`` bytes of a recording's ``data`` from byte ``offset`` (0-based), one short query."""
        query = select(func.substr(RecordingRow.data, offset + 1, size)).where(
            RecordingRow.call_sid == call_sid, RecordingRow.kind == kind
        )
        with self._read() as session:
            data = session.scalar(query)
        return bytes(data or b"")

    def save_waveform(self, call_sid: str, envelope: dict[str, Any]) -> None:
        """Insert or replace the waveform of a call's stereo recording.

        Args:
            envelope: ``audio.waveform.Envelope.to_json()`` (JSON-serializable).

        Raises:
            ValueError: empty ``call_sid``.
        """
        call_sid = _require_sid(call_sid)
        upsert = self._insert(WaveformRow.__table__).values(call_sid=call_sid, envelope=envelope)
        upsert = upsert.on_conflict_do_update(index_elements=["call_sid"], set_={"envelope": envelope})
        with self._write() as session:
            self._ensure_call(session, call_sid)
            session.execute(upsert)

    def waveform(self, call_sid: str) -> dict[str, Any] | None:
        """The stored waveform of a call (what ``save_waveform`` got), or ``None``."""
        with self._read() as session:
            return session.scalar(select(WaveformRow.envelope).where(WaveformRow.call_sid == call_sid))

    # -- erasure --------------------------------------------------------------------------------

    def delete_call(self, call_sid: str, recordings_root: str | os.PathLike[str]) -> bool:
        """Delete one call: its recording files (only inside ``recordings_root``), then its rows
        (call, turns, status events, recordings, waveform).

        Files go first: if the process dies in between, the rows are still there and a second
        delete finishes the job, and no file is left that nothing points to.

        Args:
            recordings_root: ``RECORDINGS_DIR``; a stored path outside it is not deleted (logged).

        Returns:
            True if the call was stored, False if not.

        Raises:
            OSError: a recording file inside the root cannot be deleted (the rows are kept).
        """
        return bool(self._delete_calls([call_sid], recordings_root))

    def delete_calls_ended_before(self, cutoff: datetime, recordings_root: str | os.PathLike[str]) -> list[str]:
        """Delete every call that ended before ``cutoff``, with its recordings (retention).

        Calls still going on (no ``ended_at``) are never deleted. Works in batches of
        ``_IN_CHUNK`` calls, each its own short transaction, files first (as ``delete_call``).

        Args:
            cutoff: aware ``datetime``; calls with ``ended_at < cutoff`` go.
            recordings_root: ``RECORDINGS_DIR``; stored paths outside it are not deleted (logged).

        Returns:
            The deleted call SIDs, oldest first.

        Raises:
            TypeError: ``cutoff`` is not a ``datetime``.
            OSError: a recording file inside the root cannot be deleted.
        """
        when = _require_time(cutoff, "cutoff")
        deleted: list[str] = []
        while True:
            query = (
                select(CallRow.call_sid)
                .where(CallRow.ended_at < when)
                .order_by(CallRow.ended_at, CallRow.call_sid)
                .limit(_IN_CHUNK)
            )
            with self._read() as session:
                batch = list(session.scalars(query))
            if not batch:
                return deleted
            deleted.extend(self._delete_calls(batch, recordings_root))

    def _delete_calls(self, call_sids: list[str], recordings_root: str | os.PathLike[str]) -> list[str]:
        """Delete these calls' files, then their rows; return the SIDs that were stored."""
        with self._read() as session:
            paths = list(session.scalars(
                select(RecordingRow.path).where(RecordingRow.call_sid.in_(call_sids), RecordingRow.path.is_not(None))
            ))
        remove_recording_files(paths, recordings_root)
        with self._write() as session:
            existing = set(session.scalars(select(CallRow.call_sid).where(CallRow.call_sid.in_(call_sids))))
            for table in (TurnRow, StatusEventRow, RecordingRow, WaveformRow, CallRow):
                session.execute(delete(table.__table__).where(table.call_sid.in_(call_sids)))
        return [sid for sid in call_sids if sid in existing]

    # -- helpers --------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A write transaction (on SQLite it begins with ``BEGIN IMMEDIATE``); commits on exit."""
        with self._sessions.begin() as session:
            session.connection(execution_options={WRITE_OPTION: True})
            yield session

    @contextmanager
    def _read(self) -> Iterator[Session]:
        """A read transaction: one consistent snapshot on SQLite; rolled back on exit."""
        with self._sessions() as session:
            yield session

    def _ensure_call(self, session: Session, call_sid: str) -> None:
        session.execute(
            self._insert(CallRow.__table__).values(call_sid=call_sid).on_conflict_do_nothing(index_elements=["call_sid"])
        )


_KEPT_WHEN_UNKNOWN = ("direction", "answered_by")
_NOTED_FIELDS = {"direction", "answered_by", "from_number", "to_number", "started_at"}


def _require_sid(call_sid: Any) -> str:
    if not isinstance(call_sid, str) or not call_sid:
        raise ValueError(f"call_sid must be a non-empty string, not {call_sid!r}")
    return call_sid


def _require_time(value: datetime, field: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{field} must be a datetime, not {value!r}")
    return value


def _parse_time(value: str | datetime | None, field: str) -> datetime | None:
    """ISO 8601 text (``Z`` allowed) → datetime; the UTC conversion is the column type's job."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{field} must be an ISO 8601 time, not {value!r}") from error


def _not_before_start(when: datetime):
    """``ended_at`` for an UPDATE of calls: ``when``, or ``started_at`` when that is later."""
    when = literal(when, CallRow.started_at.type)  # converted to UTC like the column's values
    return case((CallRow.started_at > when, CallRow.started_at), else_=when)


def _turn_row(call_sid: str, position: int, turn: dict[str, Any]) -> dict[str, Any]:
    """One saved turn dict → the values of its ``turns`` row."""
    missing = [key for key in ("speaker", "text", "start_ms") if turn.get(key) is None]
    if missing:
        raise ValueError(f"turn {position} of {call_sid} has no {', '.join(missing)}")
    latency = turn.get("latency_ms")
    total = latency.get("total") if isinstance(latency, dict) else None
    extra = {k: v for k, v in turn.items() if k not in _TURN_BASE_KEYS and k not in _TURN_OPTIONAL_KEYS}
    return {
        "call_sid": call_sid,
        "position": position,
        "speaker": turn["speaker"],
        "text": turn["text"],
        "start_ms": int(turn["start_ms"]),
        "end_ms": None if turn.get("end_ms") is None else int(turn["end_ms"]),
        "dtmf": turn.get("dtmf"),
        "error": turn.get("error"),
        "interrupted": turn.get("interrupted"),
        "heard": turn.get("heard"),
        "latency_ms": latency,
        "latency_total_ms": round(total) if isinstance(total, (int, float)) else None,
        "extra": {k: v for k, v in extra.items() if v is not None} or None,
    }


def _stored_turn(row: Any) -> StoredTurn:
    """A ``turns`` row → its record (``to_json()`` is the turn dict as saved)."""
    values = {key: row[key] for key in _TURN_BASE_KEYS + _TURN_OPTIONAL_KEYS}
    return StoredTurn(**values, extra=MappingProxyType(dict(row["extra"] or {})))
