"""How far a media message runs ahead of the wall clock: the bound that keeps one message from filling the disk.

Twilio stamps each ``media`` message with "Presentation Timestamp in Milliseconds from the start
of the stream" (T-WS, protocol.md §2.3) and sends it in real time, so a message's audio can
never end much later than the time that has passed since ``start`` arrived (network delays
only make messages late). Recordings place audio at its timestamp and fill what lies before it
with silence, so one message stamped 27 hours ahead would make a recorder write 27 hours of
silence (4 GB). The worker therefore drops a message whose audio would end more than
``max_ahead_ms`` ahead of the elapsed wall-clock time, and a recording grows at most as fast as
real time plus that slack.

Pure: the worker reads the monotonic clock and passes ``elapsed_s``.
"""

from __future__ import annotations

DEFAULT_MAX_AHEAD_S = 5.0
"""Default slack (``MAX_MEDIA_AHEAD_S``): Twilio's clock starts before ``start`` reaches us,
and a burst after a network stall arrives early relative to our clock by up to this much."""


def ahead_of_wall_clock_ms(timestamp_ms: int, duration_ms: int, elapsed_s: float) -> float:
    """How far the end of a chunk's audio lies ahead of the wall-clock time since ``start``.

    Args:
        timestamp_ms: the chunk's ``media.timestamp``, ms.
        duration_ms: the length of its audio, ms.
        elapsed_s: wall-clock time since the ``start`` message arrived, s (monotonic).

    Returns:
        ms ahead (negative or zero: not ahead).
    """
    return timestamp_ms + duration_ms - elapsed_s * 1000.0


def is_too_far_ahead(timestamp_ms: int, duration_ms: int, elapsed_s: float, max_ahead_s: float = DEFAULT_MAX_AHEAD_S) -> bool:
    """True when a chunk's audio would end more than ``max_ahead_s`` ahead of the wall clock (drop it)."""
    return ahead_of_wall_clock_ms(timestamp_ms, duration_ms, elapsed_s) > max_ahead_s * 1000.0
