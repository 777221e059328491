"""The audio a stream carries on the wire: μ-law 8 kHz (Twilio, SignalWire's default) or SignalWire's L16.

Twilio sends and accepts only ``audio/x-mulaw`` at 8000 Hz mono [T-WS]. SignalWire's ``<Stream
codec="L16@16000h">`` / ``codec="L16@24000h">`` switch both directions to linear PCM at 16 or 24 kHz
(``start.mediaFormat.encoding`` "audio/x-L16") [SW-STREAM, protocol.md §9]. The byte order is not
documented; SignalWire's own sample passes OpenAI's little-endian ``pcm16`` through unchanged for
L16@24000h [SW-AGENT], so L16 here is signed 16-bit little-endian. Every format is mono and framed in
20 ms media messages (SignalWire's L16@24k example: 960 bytes per chunk, timestamps 20 ms apart).

Pure: no I/O, no clock reads. numpy and the repository's ``audio.codec`` are imported when a
conversion runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from tools.twilio_sim.frames import FRAME_MS, SAMPLE_RATE, ULAW_SILENCE
from tools.twilio_sim.repo import add_repo_root_to_sys_path

ULAW_ENCODING = "audio/x-mulaw"
L16_ENCODING = "audio/x-L16"


@dataclass(frozen=True)
class MediaFormat:
    """One wire format of a stream's media payloads, mono, in 20 ms media messages.

    Attributes:
        encoding: ``start.mediaFormat.encoding``: "audio/x-mulaw" or "audio/x-L16".
        sample_rate: Hz (``start.mediaFormat.sampleRate``).
        sample_width: bytes per sample: 1 (μ-law) or 2 (L16, little-endian).
        silence_byte: the byte that fills silence: 0xFF (μ-law 0) or 0x00 (PCM 0, both bytes).
        codec: the ``<Stream codec>`` value that selects it, or None for the default μ-law.
    """

    encoding: str
    sample_rate: int
    sample_width: int
    silence_byte: int
    codec: str | None = None

    @property
    def frame_bytes(self) -> int:
        """Payload bytes of one 20 ms media message: 160 (μ-law 8 kHz), 640 (L16 16 kHz), 960 (L16 24 kHz)."""
        return self.sample_rate * FRAME_MS // 1000 * self.sample_width

    @property
    def bytes_per_second(self) -> int:
        """Payload bytes per second of audio: 8000, 32000 or 48000."""
        return self.sample_rate * self.sample_width

    @property
    def silence_frame(self) -> bytes:
        """20 ms of silence in this format."""
        return bytes([self.silence_byte]) * self.frame_bytes

    @property
    def label(self) -> str:
        """A short human-readable name, e.g. "μ-law 8 kHz" or "L16 16 kHz"."""
        name = "μ-law" if self.encoding == ULAW_ENCODING else "L16"
        return f"{name} {self.sample_rate // 1000} kHz"

    def duration_ms(self, num_bytes: int) -> int:
        """Return the audio length of ``num_bytes`` payload bytes in ms, rounded."""
        return round(num_bytes * 1000 / self.bytes_per_second)

    def encode(self, samples) -> bytes:
        """Encode mono samples already at ``sample_rate`` to this format's payload bytes.

        Args:
            samples: 1-D float32/float64 array, nominal range [-1, 1] (soundfile/soxr output).
                Scaled by 32768, rounded, clipped to int16; NaN becomes 0 (``audio.codec``'s rules).

        Returns:
            μ-law bytes (one per sample), or PCM16 little-endian bytes (two per sample).
        """
        import numpy as np

        if self.encoding == ULAW_ENCODING:
            return _codec().array_to_ulaw(samples)
        scaled = np.rint(np.nan_to_num(np.asarray(samples, dtype=np.float64), nan=0.0) * 32768)
        return np.clip(scaled, -32768, 32767).astype("<i2").tobytes()

    def to_pcm16(self, payload: bytes) -> bytes:
        """Decode payload bytes of this format to PCM16 little-endian mono at ``sample_rate``.

        Raises:
            ValueError: an L16 payload with an odd number of bytes.
        """
        if self.encoding == ULAW_ENCODING:
            return _codec().ulaw_to_pcm16(bytes(payload))
        if len(payload) % 2:
            raise ValueError(f"L16 needs an even number of bytes, got {len(payload)}")
        return bytes(payload)


def _codec():
    add_repo_root_to_sys_path()
    from audio import codec

    return codec


MULAW_8K = MediaFormat(ULAW_ENCODING, SAMPLE_RATE, 1, ULAW_SILENCE)
L16_16K = MediaFormat(L16_ENCODING, 16000, 2, 0x00, codec="L16@16000h")
L16_24K = MediaFormat(L16_ENCODING, 24000, 2, 0x00, codec="L16@24000h")
L16_CODECS = {fmt.codec: fmt for fmt in (L16_16K, L16_24K)}  # SignalWire's documented values [SW-STREAM]


def media_format_for_codec(codec: str | None) -> MediaFormat:
    """Return the format a SignalWire ``<Stream codec>`` selects [SW-STREAM, protocol.md §9].

    Args:
        codec: "L16@16000h", "L16@24000h", or None/"" (no attribute: μ-law 8 kHz).

    Raises:
        ValueError: another value (SignalWire documents only those two).
    """
    if not codec:
        return MULAW_8K
    if codec not in L16_CODECS:
        raise ValueError(f"codec {codec!r} is not one of SignalWire's {sorted(L16_CODECS)} "
                         "(without codec the stream is μ-law 8 kHz)")
    return L16_CODECS[codec]
