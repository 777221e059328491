"""What the call store returns: frozen records with aware ``datetime`` times (plain data, no I/O).

``CallStore.list_calls`` returns ``CallSummary`` rows, ``CallStore.get_call`` one ``StoredCall``.
Times become ISO 8601 text only at the JSON boundary (``to_json``, with ``format_time``) and in
the pages' ``call_time`` filter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

def format_time(value: datetime | None) -> str | None:
    """An aware time → ISO 8601 text, ``YYYY-MM-DDTHH:MM:SS.mmm+00:00`` (microseconds only when the
    value has them, so a time the app wrote in ms comes back as written); ``None`` stays ``None``."""
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds" if value.microsecond % 1000 == 0 else "microseconds")


def whole_ms(value: datetime) -> datetime:
    """``value`` truncated to whole milliseconds, the precision the app writes times in."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def duration_ms(started_at: datetime | None, ended_at: datetime | None) -> int | None:
    """``ended_at - started_at`` in whole ms (rounded down), or ``None`` when either is unknown."""
    if started_at is None or ended_at is None:
        return None
    return (ended_at - started_at) // timedelta(milliseconds=1)


@dataclass(frozen=True)
class CallSummary:
    """One row of the call list (``GET /api/calls``, ``/calls``).

    Attributes:
        call_sid: Twilio's ``CallSid``.
        from_number, to_number: the caller and the called number (or SIP address), if known.
        started_at, ended_at: aware UTC times, ``None`` when unknown (``ended_at``: still going on).
        mode: ``"conversation"``, ``"fork"``, or ``None`` (a status callback's placeholder).
        turn_count: number of stored turns.
        direction: ``"inbound"``, ``"outbound"``, or ``None`` when unknown.
    """

    call_sid: str
    from_number: str | None
    to_number: str | None
    started_at: datetime | None
    ended_at: datetime | None
    mode: str | None
    turn_count: int
    direction: str | None = None

    @property
    def duration_ms(self) -> int | None:
        """``ended_at - started_at`` in ms, or ``None``."""
        return duration_ms(self.started_at, self.ended_at)

    def to_json(self) -> dict[str, Any]:
        """The API shape: ``call_sid``, ``from``, ``to``, ``started_at``/``ended_at`` (ISO 8601 or
        ``None``), ``duration_ms``, ``mode``, ``turn_count``, ``direction``."""
        return {
            "call_sid": self.call_sid,
            "from": self.from_number,
            "to": self.to_number,
            "started_at": format_time(self.started_at),
            "ended_at": format_time(self.ended_at),
            "duration_ms": self.duration_ms,
            "mode": self.mode,
            "turn_count": self.turn_count,
            "direction": self.direction,
        }


@dataclass(frozen=True)
class StoredTurn:
    """One stored turn (the fields of ``core.records.Turn``, with its optional extras split out).

    Attributes:
        speaker: ``"caller"``, ``"bot"`` or ``"callee"``.
        text: what was said.
        start_ms, end_ms: media-clock ms; ``end_ms`` ``None`` while the bot was still speaking.
        dtmf, error, interrupted, heard: optional, ``None`` when not set.
        latency_ms: stage → ms (``endpoint``, ``recognition``, ``responder``, ``synthesis``,
            ``total``) on a bot reply, else ``None``.
        extra: any other key the session saved (read-only mapping).
    """

    speaker: str
    text: str
    start_ms: int
    end_ms: int | None
    dtmf: str | None = None
    error: str | None = None
    interrupted: bool | None = None
    heard: str | None = None
    latency_ms: Mapping[str, float] | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def to_json(self) -> dict[str, Any]:
        """The turn dict as saved: ``speaker``, ``text``, ``start_ms``, ``end_ms``, then each optional
        key that is set, then the extras."""
        data: dict[str, Any] = {"speaker": self.speaker, "text": self.text, "start_ms": self.start_ms, "end_ms": self.end_ms}
        for key in ("dtmf", "error", "interrupted", "heard", "latency_ms"):
            value = getattr(self, key)
            if value is not None:
                data[key] = dict(value) if isinstance(value, Mapping) else value  # a copy: callers may change it
        data.update(self.extra)
        return data


@dataclass(frozen=True)
class StatusEvent:
    """One Twilio stream ``statusCallback`` request, as received.

    Attributes:
        event: ``stream-started``, ``stream-stopped`` or ``stream-error``.
        error: ``StreamError``, or ``None``.
        timestamp: ``Timestamp`` verbatim (text, only shown), or ``None``.
        name: ``StreamName``, or ``None``.
    """

    event: str
    error: str | None
    timestamp: str | None
    name: str | None

    def to_json(self) -> dict[str, Any]:
        """``{event, error, timestamp, name}``."""
        return {"event": self.event, "error": self.error, "timestamp": self.timestamp, "name": self.name}


@dataclass(frozen=True)
class RecordingSummary:
    """One recording of a call as listed with it (``store.calls.Recording`` has the full metadata).

    Attributes:
        kind: ``"stereo"``, ``"inbound"`` or ``"outbound"``.
        duration_ms: length of the audio, ms.
        size_bytes: size of the file, bytes.
    """

    kind: str
    duration_ms: int
    size_bytes: int

    def to_json(self) -> dict[str, Any]:
        """``{kind, duration_ms, size_bytes}``."""
        return {"kind": self.kind, "duration_ms": self.duration_ms, "size_bytes": self.size_bytes}


@dataclass(frozen=True)
class StoredCall:
    """One stored call with its turns, status events and recordings (``GET /api/calls/<call_sid>``).

    Attributes:
        call_sid, stream_sid: Twilio's SIDs (``stream_sid`` ``None`` on a placeholder).
        from_number, to_number: as in ``CallSummary``.
        started_at, ended_at: aware UTC times or ``None``.
        mode: ``"conversation"``, ``"fork"`` or ``None``.
        direction: ``"inbound"``, ``"outbound"`` or ``None``.
        answered_by: Twilio's ``AnsweredBy`` on an outbound call with answering-machine detection.
        transferred_to: the number or SIP address the call was transferred to.
        turns: ordered by ``start_ms``, then position in the saved list.
        status_events: in arrival order.
        recordings: ordered by kind.
    """

    call_sid: str
    stream_sid: str | None
    from_number: str | None
    to_number: str | None
    started_at: datetime | None
    ended_at: datetime | None
    mode: str | None
    direction: str | None = None
    answered_by: str | None = None
    transferred_to: str | None = None
    turns: tuple[StoredTurn, ...] = ()
    status_events: tuple[StatusEvent, ...] = ()
    recordings: tuple[RecordingSummary, ...] = ()

    @property
    def duration_ms(self) -> int | None:
        """``ended_at - started_at`` in ms, or ``None``."""
        return duration_ms(self.started_at, self.ended_at)

    def to_json(self) -> dict[str, Any]:
        """The API shape: ``call_sid``, ``stream_sid``, ``from``, ``to``, ``started_at``/``ended_at``
        (ISO 8601 or ``None``), ``mode``, ``direction``, ``answered_by``, ``transferred_to``,
        ``turns`` (dicts as saved), ``status_events`` and ``recordings`` (dicts)."""
        return {
            "call_sid": self.call_sid,
            "stream_sid": self.stream_sid,
            "from": self.from_number,
            "to": self.to_number,
            "started_at": format_time(self.started_at),
            "ended_at": format_time(self.ended_at),
            "mode": self.mode,
            "direction": self.direction,
            "answered_by": self.answered_by,
            "transferred_to": self.transferred_to,
            "turns": [turn.to_json() for turn in self.turns],
            "status_events": [event.to_json() for event in self.status_events],
            "recordings": [recording.to_json() for recording in self.recordings],
        }
