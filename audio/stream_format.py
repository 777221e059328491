"""The wire audio format of one media stream: Twilio's μ-law or SignalWire's linear PCM.

Twilio Media Streams carry ``audio/x-mulaw`` at 8000 Hz mono both ways, and so does a
SignalWire ``<Stream>`` without a ``codec`` attribute. SignalWire's ``codec="L16@16000h"``
and ``codec="L16@24000h"`` carry linear PCM at 16 000 or 24 000 Hz instead, announced in
``start.mediaFormat`` as ``{"encoding": "audio/x-L16", "sampleRate": 24000, "channels": 1}``,
and "the media you send back must match" (protocol.md §9).

Byte order of L16: SignalWire's docs do not state it. It is taken to be **little-endian**
(an inference): SignalWire's own sample, ``signalwire/cXML-realtime-agent-stream``
(``SignalWireCompatibilityTransportLayer.ts``), passes OpenAI Realtime's ``pcm16``
(16-bit signed little-endian, 24 kHz, mono) straight through in both directions for
``L16@24000h``, with no conversion. (RTP's L16, RFC 3551, is big-endian; the WebSocket
payload evidently is not.) Verify on a live call.

The session analyses inbound audio (VAD, endpointing, recognition) at
:attr:`StreamFormat.processing_rate`: the wire rate when the WebRTC VAD takes it
(8000 or 16 000 Hz), 16 000 Hz for 24 000 Hz streams (the VAD does not take 24 kHz, and
whisper works at 16 kHz).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audio.codec import array_to_pcm16, array_to_ulaw, ulaw_to_pcm16
from audio.constants import MULAW_SAMPLE_RATE, WHISPER_SAMPLE_RATE
from audio.errors import AudioFormatError
from audio.resample import resample

MULAW = "audio/x-mulaw"
"""``start.mediaFormat.encoding`` of G.711 μ-law (Twilio; SignalWire's default)."""
L16 = "audio/x-L16"
"""``start.mediaFormat.encoding`` of linear PCM16 (SignalWire ``codec="L16@…h"``)."""

# encoding -> wire sample rates accepted, in Hz (protocol.md §9: 8000, 16000 or 24000)
_RATES = {MULAW: (MULAW_SAMPLE_RATE,), L16: (8000, 16000, 24000)}
_PROCESSING_RATE = {8000: 8000, 16000: 16000, 24000: WHISPER_SAMPLE_RATE}  # the VAD takes no 24 kHz


@dataclass(frozen=True)
class StreamFormat:
    """The audio on the wire of one stream, in both directions: mono, one encoding, one rate.

    Attributes:
        encoding: ``"audio/x-mulaw"`` (G.711 μ-law, 1 byte per sample) or ``"audio/x-L16"``
            (PCM16 signed little-endian, 2 bytes per sample; byte order inferred, see
            the module docstring).
        sample_rate: Wire sample rate in Hz: 8000 for μ-law; 8000, 16 000 or 24 000 for L16.

    Raises:
        AudioFormatError: unsupported encoding or sample rate.
    """

    encoding: str
    sample_rate: int

    def __post_init__(self) -> None:
        rates = _RATES.get(self.encoding)
        if rates is None:
            raise AudioFormatError(f"unsupported stream encoding {self.encoding!r}: expected {MULAW!r} or {L16!r}")
        if type(self.sample_rate) is not int or self.sample_rate not in rates:
            raise AudioFormatError(f"{self.encoding} streams are {rates} Hz, got {self.sample_rate!r}")

    @property
    def is_ulaw(self) -> bool:
        """True for μ-law."""
        return self.encoding == MULAW

    @property
    def bytes_per_sample(self) -> int:
        """1 for μ-law, 2 for L16."""
        return 1 if self.encoding == MULAW else 2

    @property
    def bytes_per_ms(self) -> int:
        """Wire bytes per ms of audio: 8 for μ-law 8 kHz, 32 for L16 16 kHz, 48 for L16 24 kHz."""
        return self.sample_rate // 1000 * self.bytes_per_sample

    @property
    def processing_rate(self) -> int:
        """Sample rate in Hz of the PCM16 the session analyses (VAD, endpointing, recognition).

        8000 for μ-law and L16@8000, 16 000 for L16@16000 and L16@24000.
        """
        return _PROCESSING_RATE[self.sample_rate]

    def decode(self, wire: bytes) -> bytes:
        """Convert wire bytes to PCM16 at the wire rate.

        Args:
            wire: audio in this format (a media payload, base64-decoded), any bytes-like object.

        Returns:
            PCM16 signed little-endian mono at ``sample_rate`` Hz. For L16 the same bytes
            (``wire`` itself when it is ``bytes``).

        Raises:
            AudioFormatError: L16 audio of an odd number of bytes.
        """
        if self.encoding == MULAW:
            return ulaw_to_pcm16(wire)
        if len(wire) % 2:
            raise AudioFormatError(f"L16 audio needs an even number of bytes, got {len(wire)}")
        return bytes(wire)

    def decode_at_processing_rate(self, wire: bytes) -> bytes:
        """Convert wire bytes to PCM16 at :attr:`processing_rate` (soxr when the rates differ).

        Returns:
            PCM16 signed little-endian mono at ``processing_rate`` Hz.

        Raises:
            AudioFormatError: L16 audio of an odd number of bytes.
        """
        pcm = self.decode(wire)
        if self.sample_rate == self.processing_rate:
            return pcm
        return resample(np.frombuffer(pcm, dtype="<i2"), self.sample_rate, self.processing_rate).astype("<i2").tobytes()

    def encode(self, samples: np.ndarray, sample_rate: int) -> bytes:
        """Convert mono audio at any rate to wire bytes (soxr "HQ" resampling, then the codec).

        Args:
            samples: 1-D ``int16``, or ``float32``/``float64`` in nominal [-1, 1] (scaled by
                32768, rounded, clipped), mono.
            sample_rate: rate of ``samples`` in Hz.

        Returns:
            Audio in this format at ``self.sample_rate``, about
            ``len(samples) * self.sample_rate / sample_rate`` samples.

        Raises:
            AudioFormatError: ``samples`` is not 1-D int16/float, or ``sample_rate`` is not a
                positive integer.
        """
        at_wire_rate = resample(samples, sample_rate, self.sample_rate)
        if self.encoding == MULAW:
            return array_to_ulaw(at_wire_rate)
        return array_to_pcm16(at_wire_rate)

    def __str__(self) -> str:
        return f"{self.encoding}@{self.sample_rate}"


MULAW_8K = StreamFormat(MULAW, MULAW_SAMPLE_RATE)
"""Twilio's format in both directions, and SignalWire's default (protocol.md §2.3, §9)."""


def stream_format(encoding: str, sample_rate: int, channels: int = 1) -> StreamFormat:
    """The format a ``start`` message announces in ``start.mediaFormat`` (protocol.md §2.3, §9).

    Args:
        encoding: ``mediaFormat.encoding``: ``"audio/x-mulaw"`` or ``"audio/x-L16"``
            (compared exactly; SignalWire and Twilio spell them so).
        sample_rate: ``mediaFormat.sampleRate`` in Hz, an int.
        channels: ``mediaFormat.channels``; only 1 is supported.

    Returns:
        The format (``MULAW_8K`` for Twilio's).

    Raises:
        AudioFormatError: channels other than 1 (SignalWire documents 2 for ``both_tracks``,
            unconfirmed), an unknown encoding, or a rate the encoding does not come at here
            (μ-law other than 8000 Hz; L16 other than 8000, 16 000, 24 000 Hz).
    """
    if isinstance(channels, bool) or channels != 1:
        raise AudioFormatError(f"only mono streams are supported, got channels={channels!r}")
    if encoding == MULAW and type(sample_rate) is int and sample_rate == MULAW_SAMPLE_RATE:
        return MULAW_8K
    return StreamFormat(encoding, sample_rate)
