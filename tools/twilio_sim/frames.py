"""Twilio's media framing: 8 kHz μ-law in 20 ms frames, and the media clock of those frames.

Pure: no I/O, no clock reads.
"""

from __future__ import annotations

SAMPLE_RATE = 8000  # Hz, Twilio's only inbound format: audio/x-mulaw 8 kHz mono [T-WS].
FRAME_MS = 20  # Twilio sends one 160-byte (20 ms) media message per frame [protocol.md §7, obs].
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000  # 160 μ-law bytes
ULAW_SILENCE = 0xFF  # μ-law code for 0


def split_frames(ulaw: bytes, frame_bytes: int = FRAME_BYTES, pad_byte: int = ULAW_SILENCE) -> list[bytes]:
    """Cut audio into frames, padding the last one with silence.

    Args:
        ulaw: G.711 μ-law bytes, 8 kHz mono (or payload bytes of another ``MediaFormat``).
        frame_bytes: bytes per frame (160 = 20 ms of μ-law 8 kHz).
        pad_byte: the silence byte: μ-law 0xFF, or 0x00 for L16.

    Returns:
        ``ceil(len(ulaw) / frame_bytes)`` frames of exactly ``frame_bytes`` bytes.
    """
    frames = [ulaw[i:i + frame_bytes] for i in range(0, len(ulaw), frame_bytes)]
    if frames and len(frames[-1]) < frame_bytes:
        frames[-1] += bytes([pad_byte]) * (frame_bytes - len(frames[-1]))
    return frames


def frame_index_for_ms(time_ms: int, first_timestamp_ms: int, frame_ms: int = FRAME_MS) -> int:
    """Return the index of the media frame containing the instant just before ``time_ms``.

    Frame n covers media-clock times [first + n*frame_ms, first + (n+1)*frame_ms).
    A turn ending at ``time_ms`` ends inside the frame holding ``time_ms - 1``.
    Times before the first frame give 0.
    """
    return max(0, (time_ms - first_timestamp_ms - 1) // frame_ms)
