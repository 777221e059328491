"""Bot audio queued at Twilio: its marks, what the caller heard, and where it played on the media clock.

Sans-I/O: times are media-clock milliseconds passed in by the session (the ``timestamp`` of
the latest inbound media). Each synthesized sentence is sent followed by one mark; Twilio
echoes the mark when the sentence has played (T-WS "mark"), or at once after a ``clear``.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from core.actions import RecordPlayed

log = logging.getLogger(__name__)


@dataclass
class PendingMark:
    """One sentence sent to Twilio whose mark has not been echoed yet.

    ``final``: the last sentence of its reply (the reply ends with this echo); ``audio``: the
    sentence in the stream's wire format; ``sent_ms``: media time it was sent.
    """

    name: str
    reply_id: int
    sentence_index: int
    final: bool
    audio: bytes
    sent_ms: int


class Playout:
    """The marks pending at Twilio, in send order, and the placement of the audio that played.

    Args:
        bytes_per_ms: wire bytes per millisecond of audio (8 for μ-law 8 kHz).
    """

    def __init__(self, bytes_per_ms: int) -> None:
        self._bytes_per_ms = bytes_per_ms
        self._marks: deque[PendingMark] = deque()
        self._heard: dict[int, list[int]] = {}  # reply id → indices of the sentences whose mark was echoed
        self._end_ms = 0  # media time the last placed audio ended

    @property
    def has_pending(self) -> bool:
        """True while sent audio may still be playing (a mark is not echoed yet)."""
        return bool(self._marks)

    def queue(self, reply_id: int, index: int, audio: bytes, *, final: bool, sent_ms: int) -> str:
        """Note sentence ``index`` of ``reply_id`` (``audio`` in wire format) sent at ``sent_ms``;
        return the name of the mark to send after it."""
        name = f"r{reply_id}s{index}"
        self._marks.append(PendingMark(name, reply_id, index, final, audio, sent_ms))
        return name

    def finish_reply_at_last_mark(self, reply_id: int) -> bool:
        """Make the last pending mark of ``reply_id`` its final one; False if it has none pending."""
        pending = [m for m in self._marks if m.reply_id == reply_id]
        if not pending:
            return False
        pending[-1].final = True
        return True

    def echo(self, name: str, now_ms: int) -> list[tuple[PendingMark, RecordPlayed | None]]:
        """Twilio echoed mark ``name`` at ``now_ms``: it and every mark before it have played.

        Returns each played mark, in order, with the placement of its audio (``None`` if none
        of it played). An unknown name (never sent, or echoed after a ``clear``) returns ``[]``.
        """
        if all(m.name != name for m in self._marks):
            log.debug("ignoring mark %r (unknown, or cleared)", name)
            return []
        played = []
        while self._marks:
            mark = self._marks.popleft()
            placed = self._place(mark, ends_at_ms=now_ms if mark.name == name else None)
            played.append((mark, placed))
            if mark.final:
                self._heard.pop(mark.reply_id, None)
            else:
                self._heard.setdefault(mark.reply_id, []).append(mark.sentence_index)
            if mark.name == name:
                break
        return played

    def clear(self, now_ms: int) -> list[RecordPlayed]:
        """A ``clear`` or the end of the stream at ``now_ms``: drop every pending mark and return
        the placement of what played of their audio until then."""
        placed = [self._place(mark, ends_at_ms=None, until_ms=now_ms) for mark in self._marks]
        self._marks.clear()
        return [p for p in placed if p is not None]

    def take_heard(self, reply_id: int) -> list[int]:
        """Return and forget the indices of the sentences of ``reply_id`` that played (their mark
        was echoed), in order."""
        return self._heard.pop(reply_id, [])

    def _place(self, mark: PendingMark, *, ends_at_ms: int | None, until_ms: int | None = None) -> RecordPlayed | None:
        """Place the audio of ``mark``'s sentence where it played.

        ``ends_at_ms``: its echo says it finished then. Otherwise it started when it was sent
        or when the audio before it ended, whichever is later; ``until_ms`` cuts it there
        (a ``clear`` or ``stop``).
        """
        duration_ms = len(mark.audio) // self._bytes_per_ms
        if ends_at_ms is not None:  # never before it was sent (the inbound clock may have stalled)
            start_ms = max(ends_at_ms - duration_ms, self._end_ms, mark.sent_ms)
        else:
            start_ms = max(mark.sent_ms, self._end_ms)
        if until_ms is not None:
            duration_ms = min(duration_ms, until_ms - start_ms)
        if duration_ms <= 0:
            return None
        self._end_ms = start_ms + duration_ms
        return RecordPlayed(start_ms, mark.audio[: duration_ms * self._bytes_per_ms])
