"""The lifecycle shared by the sessions of a media stream (``CallSession``, ``ListenSession``).

Sans-I/O like ``websockets.Protocol``: the worker feeds every parsed Twilio message to
``receive_event`` and transcripts to ``receive_transcript``, calls ``hang_up`` or ``close``,
then drains ``actions_to_perform()``. A session moves through ``Phase`` in one direction:

    AWAITING_START --start--> STREAMING --hang_up()--> HANGING_UP --stop/close()--> STOPPED

(``stop`` or ``close()`` reach ``STOPPED`` from any phase; a second ``start`` is ignored.)
"""

from __future__ import annotations

import enum
import logging
from abc import ABC, abstractmethod

from core.actions import Action
from core.protocol import Event, Media, Start, Stop, UnknownEvent
from core.records import CallRecord

log = logging.getLogger(__name__)


class Phase(enum.Enum):
    """Where a stream's session is in its life."""

    AWAITING_START = "awaiting start"  # no ``start`` message yet: media is ignored
    STREAMING = "streaming"  # listening (and, in a conversation, answering)
    HANGING_UP = "hanging up"  # hang_up() was called: the goodbye plays, nothing is answered
    STOPPED = "stopped"  # ``stop`` arrived or the socket ended: only transcripts are recorded


class StreamSession(ABC):
    """Base of the per-stream state machines.

    Attributes:
        mode: ``"conversation"`` or ``"fork"``, as in ``CallRecord.mode``.
        phase: the ``Phase``.
        start: the ``start`` message, once it came.
        stream_sid: its stream SID.
        record: the call record, created by ``start``.
    """

    mode = "conversation"

    def __init__(self) -> None:
        self.phase = Phase.AWAITING_START
        self.start: Start | None = None
        self.stream_sid: str | None = None
        self.record: CallRecord | None = None
        self._actions: list[Action] = []

    @property
    def stopped(self) -> bool:
        """True once ``stop`` arrived or the socket ended."""
        return self.phase is Phase.STOPPED

    @property
    @abstractmethod
    def frames_lost(self) -> int:
        """Inbound frames missing from the media clock so far (filled with silence)."""

    def actions_to_perform(self) -> list[Action]:
        """Return and forget the actions produced since the last call. Perform them in order."""
        actions, self._actions = self._actions, []
        return actions

    def take_latency_reports(self) -> list[dict[str, int]]:
        """Return and forget the ``latency_ms`` of replies finished since the last call (``[]``
        for a session that does not reply)."""
        return []

    def receive_event(self, event: Event) -> None:
        """Handle one parsed Twilio message. Afterwards drain ``actions_to_perform()``."""
        if isinstance(event, Media):
            self._on_media(event)
        elif isinstance(event, Start):
            if self.start is not None or self.stopped:
                log.warning("ignoring a start message after %s", "start" if self.start else "stop")
                return
            self.start, self.stream_sid = event, event.stream_sid
            params = event.custom_parameters
            self.record = CallRecord(event.call_sid, event.stream_sid, params.get("From"), params.get("To"), mode=self.mode)
            self.phase = Phase.STREAMING
            self._on_start(event)
        elif isinstance(event, Stop):
            if not self.stopped:  # a repeated stop changes nothing
                self._stop()
        elif isinstance(event, UnknownEvent):
            log.info("ignoring unknown event %r", event.event)
        else:
            self._on_other_event(event)

    @abstractmethod
    def receive_transcript(
        self, turn_id: int, text: str | None, error: str | None = None, *, elapsed_ms: int | None = None
    ) -> None:
        """Take the recognizer's result for a ``Transcribe`` of ``turn_id``."""

    @abstractmethod
    def hang_up(self, goodbye: str, reason: str) -> None:
        """End the call for ``reason``: say ``goodbye`` if the session can speak, then ``HangUp``."""

    def close(self) -> None:
        """The socket ended. Same as ``stop`` if Twilio did not send one."""
        if not self.stopped:
            self._stop()

    def _stop(self) -> None:
        self.phase = Phase.STOPPED
        self._on_stop()

    @abstractmethod
    def _on_start(self, event: Start) -> None:
        """The stream started (``start``, ``stream_sid`` and ``record`` are set)."""

    @abstractmethod
    def _on_media(self, event: Media) -> None:
        """Inbound or outbound audio (also before ``start``)."""

    @abstractmethod
    def _on_stop(self) -> None:
        """The stream ended (``phase`` is ``STOPPED``): flush and emit ``EndCall``."""

    def _on_other_event(self, event: Event) -> None:
        """``connected``, ``mark``, ``dtmf``: ignored unless the session handles them."""
