"""SQLAlchemy 2.0 declarative models of the call store: the tables the Alembic migrations create.

Six tables; five keyed by the Twilio call SID (``CA…``):

- ``calls``: one row per call (``CallRow``).
- ``turns``: the call's turns, keyed by (call SID, position in the saved list) (``TurnRow``).
- ``stream_status_events``: Twilio's stream ``statusCallback`` requests, in arrival order
  (``StatusEventRow``).
- ``recordings``: one row per (call SID, kind) recording, its bytes in a file or in the
  ``data`` column (``RecordingRow``).
- ``instances``: the server processes sharing the database, with their heartbeat
  (``InstanceRow``): a call whose process is gone can be ended and filed by another.
- ``waveforms``: the call's stereo recording drawn once, as a min/max envelope (``WaveformRow``).

Keep these models and ``store/migrations/versions/`` in step: ``tests/test_store.py`` fails when
Alembic's ``compare_metadata`` finds a difference between them.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints, so later migrations can drop or alter them by name (SQLite batch mode needs names).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC ``datetime`` on both back ends.

    PostgreSQL stores ``TIMESTAMP WITH TIME ZONE``. SQLite has no time type: SQLAlchemy stores
    ``DATETIME`` as text and silently drops the offset, so values are converted to UTC first and
    read back as UTC. Naive datetimes are taken to be UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# ``none_as_null``: Python ``None`` is stored as SQL NULL, not as the JSON text ``null``.
JsonColumn = JSON(none_as_null=True)


class Base(DeclarativeBase):
    """Declarative base; ``Base.metadata`` is the target of Alembic's autogenerate."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CallRow(Base):
    """One call. A row with only ``call_sid`` set is a placeholder made by a status event.

    ``from_number``/``to_number`` are Twilio's ``From``/``To`` as given: E.164 numbers, but also
    SIP addresses of any length (``sip:…@pbx.example.com;transport=tls``), hence ``Text``. SIDs
    stay bounded: they are validated before they get here. ``instance_id`` is the process
    (``InstanceRow``) that keeps the call; ``NULL`` for rows written before it existed.
    ``direction`` (``inbound``/``outbound``), ``answered_by`` (answering-machine detection) and
    ``transferred_to`` (a cold transfer's target) are ``NULL`` when unknown.
    """

    __tablename__ = "calls"

    call_sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    stream_sid: Mapped[str | None] = mapped_column(String(64))
    from_number: Mapped[str | None] = mapped_column(Text)
    to_number: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    mode: Mapped[str | None] = mapped_column(String(16))  # "conversation" | "fork"
    instance_id: Mapped[str | None] = mapped_column(String(64))
    direction: Mapped[str | None] = mapped_column(String(16))  # "inbound" | "outbound"
    answered_by: Mapped[str | None] = mapped_column(String(32))  # Twilio's AnsweredBy (outbound calls with AMD)
    transferred_to: Mapped[str | None] = mapped_column(Text)  # the <Dial> target of a transfer

    __table_args__ = (Index("ix_calls_started_at", "started_at"), Index("ix_calls_ended_at", "ended_at"))


class TurnRow(Base):
    """One turn, at ``position`` in the call's turn list as last saved (0-based).

    Times are ms on the stream's ``media.timestamp`` clock. The optional turn keys have columns
    of their own; ``latency_ms`` is kept whole as JSON and its ``total`` also in
    ``latency_total_ms`` (shown on pages, sortable); unknown keys go to ``extra``.
    """

    __tablename__ = "turns"

    call_sid: Mapped[str] = mapped_column(
        String(64), ForeignKey("calls.call_sid", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    speaker: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    start_ms: Mapped[int] = mapped_column(Integer)
    end_ms: Mapped[int | None] = mapped_column(Integer)
    dtmf: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    interrupted: Mapped[bool | None] = mapped_column(Boolean)
    heard: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[dict[str, Any] | None] = mapped_column(JsonColumn)
    latency_total_ms: Mapped[int | None] = mapped_column(Integer)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JsonColumn)


class StatusEventRow(Base):
    """One Twilio stream ``statusCallback`` request; ``id`` gives the arrival order.

    ``timestamp`` is Twilio's ``Timestamp`` parameter kept verbatim (ISO 8601 text): it is only
    shown, and a format surprise must not lose the event.
    """

    __tablename__ = "stream_status_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_sid: Mapped[str] = mapped_column(String(64), ForeignKey("calls.call_sid", ondelete="CASCADE"))
    stream_sid: Mapped[str | None] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(32))  # stream-started | stream-stopped | stream-error
    error: Mapped[str | None] = mapped_column(Text)
    timestamp: Mapped[str | None] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (Index("ix_stream_status_events_call_sid", "call_sid"),)


class RecordingRow(Base):
    """Metadata of one recording (``kind``: stereo | inbound | outbound) and where its bytes are.

    Exactly one of ``path`` (a file on disk) and ``data`` (the bytes, for platforms whose
    filesystem is wiped at restart) is set.
    """

    __tablename__ = "recordings"

    call_sid: Mapped[str] = mapped_column(
        String(64), ForeignKey("calls.call_sid", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    duration_ms: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(64))
    path: Mapped[str | None] = mapped_column(Text)
    data: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)

    __table_args__ = (CheckConstraint("(path IS NULL) <> (data IS NULL)", name="path_xor_data"),)


class InstanceRow(Base):
    """One server process using the database, and when it last said it was alive.

    ``heartbeat_at`` is refreshed every ``INSTANCE_HEARTBEAT_S``; a row whose heartbeat is
    older than three intervals, or whose ``pid`` is gone on this ``hostname``, is a dead
    process: its open calls may be ended and its recording folders filed by another.
    """

    __tablename__ = "instances"

    instance_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime)


class WaveformRow(Base):
    """The drawn-once picture data of a call's stereo recording (``audio.waveform.Envelope`` as JSON).

    Computed when the recordings are filed (or at the first view of an older call), so a page
    view never decodes the recording. Deleted with the call.
    """

    __tablename__ = "waveforms"

    call_sid: Mapped[str] = mapped_column(
        String(64), ForeignKey("calls.call_sid", ondelete="CASCADE"), primary_key=True
    )
    envelope: Mapped[dict[str, Any]] = mapped_column(JsonColumn)
