"""The bot's replies as the caller experienced them, and voice-to-voice latency.

Pure: no I/O; time comes in as arguments (monotonic seconds).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

REPLY_GAP_S = 0.4  # outbound media after this much silence on the wire, with nothing queued, starts a new reply


@dataclass
class Reply:
    """One bot reply as the caller experienced it.

    Attributes:
        index: 1-based reply number.
        arrival_s: monotonic time its first outbound media message arrived.
        heard_ms: media-clock timestamp (ms) of the tick that played its first audio, or None.
        first_mark_echo_s: monotonic time of the first mark echoed by playback after it began, or None.
        media_messages: outbound media messages in this reply.
        ulaw_bytes: payload bytes received in this reply (μ-law; L16 bytes on a SignalWire L16 stream).
    """

    index: int
    arrival_s: float
    heard_ms: int | None = None
    first_mark_echo_s: float | None = None
    media_messages: int = 0
    ulaw_bytes: int = 0


class ReplyTracker:
    """Split the bot's outbound media into replies.

    A media message starts a new reply when it is the first one, when a
    ``clear`` came since the previous media, or when nothing was queued for
    playback and no media had arrived for ``gap_s``. Times are monotonic seconds.
    """

    def __init__(self, gap_s: float = REPLY_GAP_S):
        self.gap_s = gap_s
        self.replies: list[Reply] = []
        self._last_media_s: float | None = None
        self._cleared = False

    def on_media(self, now_s: float, num_bytes: int, audio_queued: bool) -> Reply | None:
        """Account for one outbound media message; return the new Reply if it starts one, else None."""
        new = (not self.replies or self._cleared
               or (not audio_queued and now_s - self._last_media_s >= self.gap_s))
        started = None
        if new:
            started = Reply(index=len(self.replies) + 1, arrival_s=now_s)
            self.replies.append(started)
        reply = self.replies[-1]
        reply.media_messages += 1
        reply.ulaw_bytes += num_bytes
        self._last_media_s = now_s
        self._cleared = False
        return started

    def on_clear(self) -> None:
        """Account for a ``clear``: the next media starts a new reply."""
        self._cleared = True

    def on_played(self, timestamp_ms: int) -> None:
        """Account for bot audio played on the tick with media timestamp ``timestamp_ms``."""
        if self.replies and self.replies[-1].heard_ms is None:
            self.replies[-1].heard_ms = timestamp_ms

    def on_mark_echo(self, now_s: float) -> None:
        """Account for a mark echoed because playback reached it (not because of a clear)."""
        if self.replies and self.replies[-1].first_mark_echo_s is None and now_s >= self.replies[-1].arrival_s:
            self.replies[-1].first_mark_echo_s = now_s


def pair_latencies(caller_ends: list[tuple[int, int, float]], replies: list[Reply]) -> list[dict]:
    """Pair each caller turn with the first reply that started after it, and measure latency.

    Args:
        caller_ends: (turn index in the call record, turn end_ms, monotonic time
            the frame containing end_ms was sent), one per caller turn, in order.
        replies: replies from ``ReplyTracker``, in order.

    Returns:
        One dict per caller turn: ``caller_turn`` (index), ``caller_end_ms``,
        ``reply`` (1-based index or None), ``voice_to_voice_ms`` (end frame sent
        → first media of the reply arrived), ``first_mark_echo_ms`` (end frame
        sent → first mark echoed by playback after the reply began), and
        ``reply_heard_ms`` (media clock). A reply counts for a turn only if it
        began before the next caller turn's end frame was sent.
    """
    results = []
    ordered = sorted(caller_ends, key=lambda end: end[2])
    for position, (turn_index, end_ms, sent_s) in enumerate(ordered):
        next_sent_s = ordered[position + 1][2] if position + 1 < len(ordered) else math.inf
        reply = next((r for r in replies if sent_s < r.arrival_s <= next_sent_s), None)
        entry = {"caller_turn": turn_index, "caller_end_ms": end_ms, "reply": None,
                 "voice_to_voice_ms": None, "first_mark_echo_ms": None, "reply_heard_ms": None}
        if reply is not None:
            entry["reply"] = reply.index
            entry["voice_to_voice_ms"] = round((reply.arrival_s - sent_s) * 1000)
            entry["reply_heard_ms"] = reply.heard_ms
            if reply.first_mark_echo_s is not None:
                entry["first_mark_echo_ms"] = round((reply.first_mark_echo_s - sent_s) * 1000)
        results.append(entry)
    return results


def median_or_none(values: list[float | None]) -> float | None:
    """Median of the non-None values, or None if there are none."""
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None
