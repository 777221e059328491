"""Twilio's playback buffer for the bot's audio and marks.

Pure: no I/O, no clock reads.
"""

from __future__ import annotations

from collections import deque

from tools.twilio_sim.frames import FRAME_BYTES


class PlaybackBuffer:
    """Model of Twilio's outbound playback queue on a bidirectional stream [T-WS, protocol.md §3].

    Media payloads and marks share one FIFO. Audio plays at real time: each
    ``tick`` takes up to ``num_bytes`` payload bytes (20 ms: 160 bytes of μ-law
    8 kHz; 640/960 bytes of SignalWire's L16 at 16/24 kHz, whose payloads hold
    whole samples, so a tick never splits one) from the head, crossing chunk
    boundaries. A mark is reached when all audio queued before it has been
    played, and is echoed then; a mark sent while nothing is queued is reached
    at once. ``clear`` drops the queued audio and returns every queued mark,
    which Twilio echoes at once. SignalWire documents the same queue, marks and
    clear [SW-STREAM].
    """

    def __init__(self):
        self._queue: deque = deque()  # bytearray (audio) or str (mark name)
        self._queued_bytes = 0

    @property
    def queued_bytes(self) -> int:
        """Payload bytes waiting to be played."""
        return self._queued_bytes

    @property
    def pending_marks(self) -> list[str]:
        """Names of queued marks, in order."""
        return [item for item in self._queue if isinstance(item, str)]

    def enqueue_media(self, ulaw: bytes) -> None:
        """Queue one media payload (the stream's format: G.711 μ-law 8 kHz mono on Twilio) behind everything queued."""
        if ulaw:
            self._queue.append(bytearray(ulaw))
            self._queued_bytes += len(ulaw)

    def enqueue_mark(self, name: str) -> bool:
        """Queue a mark behind the queued audio.

        Returns:
            True if nothing was queued, so the mark is reached now (echo it now;
            it is not queued); False if it waits in the queue.
        """
        if not self._queue:
            return True
        self._queue.append(name)
        return False

    def clear(self) -> list[str]:
        """Drop all queued audio and marks; return the marks' names in order (echo them all now)."""
        names = self.pending_marks
        self._queue.clear()
        self._queued_bytes = 0
        return names

    def tick(self, num_bytes: int = FRAME_BYTES) -> tuple[bytes, list[str]]:
        """Play one tick of audio.

        Args:
            num_bytes: payload bytes played per tick (160 = 20 ms of μ-law at 8 kHz).

        Returns:
            (audio played: up to ``num_bytes`` payload bytes, ``b""`` when nothing
            is queued — the caller hears silence for the rest of the tick;
            names of the marks reached during this tick, including marks right
            after the last audio played).
        """
        played = bytearray()
        reached = []
        while self._queue:
            head = self._queue[0]
            if isinstance(head, str):
                reached.append(self._queue.popleft())
                continue
            if len(played) >= num_bytes:
                break
            take = min(num_bytes - len(played), len(head))
            played += head[:take]
            del head[:take]
            self._queued_bytes -= take
            if not head:
                self._queue.popleft()
        return bytes(played), reached
