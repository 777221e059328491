"""Call records: who called, when, and what each side said, on the stream's media clock.

The live record of a call, filled in by its session; ``store.calls.CallStore`` persists it.
Plain data: no I/O, no clock reads; wall-clock times are set by the caller as ISO 8601 strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Turn:
    """One turn of the conversation.

    Attributes:
        speaker: ``"caller"`` or ``"bot"``.
        text: what was said (caller: the transcript; bot: the reply text).
        start_ms: media time the turn started (caller: first voiced frame; bot: first reply
            audio sent), in ms on the stream's ``media.timestamp`` clock.
        end_ms: media time the turn ended (caller: end of the last voiced frame; bot: the
            last mark echo, i.e. playback finished, or the barge-in ``clear``); ``None``
            while the bot is still speaking.
        dtmf: the digits of a key-press turn.
        error: a short failure category (``"recognition timeout"``, ``"synthesis failed"``…).
        interrupted: ``True`` on a bot reply the caller barged in on.
        heard: on an interrupted reply, its sentences whose playback completed before the
            barge-in, joined by spaces (``""`` if none).
        latency_ms: on a bot reply, per stage: ``endpoint`` (silence waited before deciding
            the caller had finished, media clock), ``recognition``, ``responder`` and
            ``synthesis`` (first sentence) in wall-clock ms, ``required_silence`` (the silence
            the end-of-turn policy required before the reply could play, media clock;
            ``core.turn_end``), ``total`` (caller's last voiced
            frame to the first reply audio sent, media clock) and ``first_mark`` (to the
            first sentence's mark echo, media clock); on a fork's turn only ``recognition``.
        The optional fields are ``None`` while unset.
    """

    speaker: str
    text: str
    start_ms: int
    end_ms: int | None
    dtmf: str | None = None
    error: str | None = None
    latency_ms: dict[str, int] | None = None
    interrupted: bool | None = None
    heard: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the API shape: ``speaker``, ``text``, ``start_ms``, ``end_ms``, then those of
        ``dtmf``, ``error``, ``latency_ms``, ``interrupted`` and ``heard`` that are set (the keys
        of unset ones are left out)."""
        data: dict[str, Any] = {"speaker": self.speaker, "text": self.text, "start_ms": self.start_ms, "end_ms": self.end_ms}
        for key in _OPTIONAL_KEYS:
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data


# The order the session used to set them in (``latency_ms`` when the first audio is sent,
# ``interrupted`` and ``heard`` at a barge-in); the API and call.json sort keys anyway.
_OPTIONAL_KEYS = ("dtmf", "error", "latency_ms", "interrupted", "heard")


@dataclass
class CallRecord:
    """The live record of one call, kept by its session: ``to_json()`` is what
    ``CallStore.save_call`` takes (the shape of ``GET /api/calls/<call_sid>`` without status
    events and recordings). The store reads a call back as ``store.records.StoredCall``.

    ``mode`` is ``"conversation"`` (``<Connect><Stream>``: the bot talks) or ``"fork"``
    (``<Start><Stream>``: listen only; turns are ``"caller"`` and ``"callee"``). ``direction``:
    ``"inbound"`` or ``"outbound"`` (placed by ``POST /api/calls``; its ``"caller"`` turns are the
    called person's). ``answered_by``: Twilio's answering-machine detection result, once known;
    ``transferred_to``: the target of a cold transfer (``core.responder.Transfer``).
    """

    call_sid: str
    stream_sid: str
    from_number: str | None = None
    to_number: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    mode: str = "conversation"
    direction: str = "inbound"
    answered_by: str | None = None
    transferred_to: str | None = None
    turns: list[Turn] = field(default_factory=list)

    def add_turn(self, turn: Turn) -> None:
        """Insert ``turn`` in start-time order (transcripts of two tracks can finish out of order)."""
        index = len(self.turns)
        while index > 0 and self.turns[index - 1].start_ms > turn.start_ms:
            index -= 1
        self.turns.insert(index, turn)

    def to_json(self) -> dict[str, Any]:
        """Return the API shape, with ``from``/``to`` keys as in Twilio's webhook fields."""
        return {
            "call_sid": self.call_sid,
            "stream_sid": self.stream_sid,
            "from": self.from_number,
            "to": self.to_number,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "mode": self.mode,
            "direction": self.direction,
            "answered_by": self.answered_by,
            "transferred_to": self.transferred_to,
            "turns": [t.to_json() for t in self.turns],
        }
