"""Echo cancellation: take the bot's own voice out of the caller's audio before the VAD hears it.

A caller on a speakerphone (or a phone without echo cancellation) sends the bot's reply back
on the inbound track, 50-300 ms late and 10-30 dB down. Without cancellation the VAD takes it
for the caller and the bot interrupts itself (issue #14; pipecat#1771). The server knows
exactly what it sent and when, so it can cancel it: :class:`EchoCanceller` places every
sentence sent on the media clock (the *reference*, or far end) and runs each inbound frame
(the near end) through WebRTC's echo canceller (AEC3, from WebRTC's audio processing module,
packaged in the ``livekit`` wheel as ``livekit.rtc.AudioProcessingModule``). AEC3 estimates
the echo path's delay and filter itself, so the placement only has to be roughly right: the
network and the phone add their own delay after the audio is sent. While AEC3 is still
learning the echo path (the first ``ECHO_LEARN_MS`` of bot audio in a call), an energy gate
backs it up. AEC3's output is used only on a line where ``audio.echo_detect`` has found the bot's
voice: before that only the gate, and on a line found to carry no echo (a handset) nothing at all,
since AEC3 takes a handset caller's words down while it learns that there is no echo.

Chosen over an energy gate by measurement (``bench/echo.py``, docs/benchmarks.md): both
stopped every false barge-in from echo at -20 to -10 dB and 50-300 ms; after the first 3 s of bot
audio a caller talking over the bot was detected 200-240 ms after their first voiced frame with
AEC3, and 1.2-2.3 s with the gate alone.

Sans-I/O: media-clock times come in as arguments; the canceller is created on the first frame
that needs it and is only run while bot audio plays (and ``tail_ms`` after), so a call that
never hears the bot costs nothing.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

import numpy as np

from audio.echo_detect import Echo, EchoDetector

log = logging.getLogger(__name__)

ECHO_TAIL_MS = 600
"""How long after the last reference audio inbound frames still go through the canceller, ms:
the echo of the bot's last word arrives up to the echo path's delay later."""

CLEAR_LAG_MS = 300
"""After a ``clear`` the audio already on its way still plays: Twilio gets the ``clear`` one
network leg later and the phone plays what it already had. The reference keeps this much of
the cleared audio (measured in the sans-I/O path with the far end stopping 60-250 ms after the
clear: the echo left in the 800 ms after it was -87 to -96 dBFS with 300 ms kept, up to -58
dBFS with none), ms."""

ECHO_LEARN_MS = 3000
"""For this much bot audio at the start of a call the canceller is still finding the echo path
(measured: it let the echo through, 4-14 dB down only, in half-second stretches 1.5-2.5 s
into the first sentence), so meanwhile a gate silences every frame no louder than an echo
could be (``GATE_ECHO_DB`` of the loudest bot audio of the last ``GATE_WINDOW_MS``), ms."""

GATE_ECHO_DB = -7.0
"""The loudest echo the gate allows for: -10 dB (the loudest speakerphone echo in issue #14's
target) plus 3 dB for the μ-law noise and level changes of the phone path, dB."""

GATE_WINDOW_MS = 500
"""The echo arrives up to this long after its bot audio played (the delay of the echo path), ms."""

_BLOCK_MS = 10  # WebRTC's audio processing module takes exactly 10 ms per call


class EchoProcessor(Protocol):
    """One stream's echo canceller, fed 10 ms blocks of PCM16 mono at one sample rate."""

    def far(self, pcm: bytes) -> None:
        """The block of bot audio that plays now (the reference)."""
        ...

    def near(self, pcm: bytes) -> bytes:
        """The caller's block recorded now; returns it with the echo removed."""
        ...


class WebRtcEchoProcessor:
    """WebRTC AEC3 (with its high-pass filter) through ``livekit.rtc.AudioProcessingModule``.

    Args:
        sample_rate: 8000, 16000, 32000 or 48000 Hz.

    Raises:
        ImportError: the ``livekit`` package is not installed.
    """

    def __init__(self, sample_rate: int) -> None:
        from livekit.rtc import AudioFrame, AudioProcessingModule

        self._frame = AudioFrame
        self._samples = sample_rate * _BLOCK_MS // 1000
        self._sample_rate = sample_rate
        self._apm = AudioProcessingModule(echo_cancellation=True, high_pass_filter=True)
        # The reference is placed when it is sent; AEC3 finds the rest of the delay itself.
        self._apm.set_stream_delay_ms(0)

    def far(self, pcm: bytes) -> None:
        self._apm.process_reverse_stream(self._frame(pcm, self._sample_rate, 1, self._samples))

    def near(self, pcm: bytes) -> bytes:
        frame = self._frame(pcm, self._sample_rate, 1, self._samples)
        self._apm.process_stream(frame)  # in place
        return bytes(frame.data)


def load_webrtc() -> None:
    """Import the WebRTC module now (about 0.4 s), so the first call that needs it does not
    wait for it on the event loop.

    Raises:
        ImportError: the ``livekit`` package is not installed.
    """
    import livekit.rtc  # noqa: F401


class EchoCanceller:
    """The bot audio on the media clock, and the caller's frames with its echo removed.

    Args:
        sample_rate: rate of every PCM16 mono buffer given or returned, Hz.
        frame_ms: length of the inbound frames passed to :meth:`process`, ms (a multiple of 10).
        tail_ms: see ``ECHO_TAIL_MS``.
        learn_ms: see ``ECHO_LEARN_MS``; 0 for no gate.
        make_processor: builds the canceller for ``sample_rate`` (default: WebRTC AEC3).
        detect: use the canceller's output only once an echo is found on the line
            (``audio.echo_detect``): until then the gate alone, and none at all on a line found
            to carry no echo. False: the canceller's output from the first frame (as before
            issue #14's detector; for benchmarks).

    Raises:
        ValueError: ``frame_ms`` is not a positive multiple of 10, or ``tail_ms`` < 0.
    """

    def __init__(self, sample_rate: int, frame_ms: int = 20, tail_ms: int = ECHO_TAIL_MS, learn_ms: int = ECHO_LEARN_MS,
                 make_processor: Callable[[int], EchoProcessor] = WebRtcEchoProcessor, detect: bool = True) -> None:
        if frame_ms <= 0 or frame_ms % _BLOCK_MS:
            raise ValueError(f"frame_ms must be a positive multiple of {_BLOCK_MS}, got {frame_ms}")
        if tail_ms < 0:
            raise ValueError(f"tail_ms must be >= 0, got {tail_ms}")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.tail_ms = tail_ms
        self._make_processor = make_processor
        self._processor: EchoProcessor | None = None
        self._bytes_per_ms = sample_rate // 1000 * 2
        self._segments: deque[tuple[int, bytes]] = deque()  # (start_ms, PCM16) in play order, not overlapping
        self._end_ms: int | None = None  # where the last placed audio ends
        self._learn_ms = learn_ms
        self._learn_ms_left = learn_ms  # bot audio still to play before the gate is lifted
        self._echo_state = Echo.UNKNOWN  # the detector's latest decision
        self._recent_far_energy: deque[float] = deque(maxlen=max(1, GATE_WINDOW_MS // frame_ms))
        self._gate_ratio = 10 ** (GATE_ECHO_DB / 10)
        self.detector = EchoDetector(sample_rate, frame_ms) if detect else None

    def play(self, sent_ms: int, pcm: bytes) -> None:
        """Bot audio (PCM16 mono at ``sample_rate``) was sent at media time ``sent_ms``: it plays
        from then, or once the audio sent before it has played (Twilio queues it)."""
        if not pcm:
            return
        start_ms = sent_ms if self._end_ms is None else max(sent_ms, self._end_ms)
        whole = len(pcm) - len(pcm) % 2
        self._segments.append((start_ms, pcm[:whole]))
        self._end_ms = start_ms + whole // self._bytes_per_ms

    def clear(self, at_ms: int) -> None:
        """The bot's queued audio was cleared at media time ``at_ms``: nothing plays
        ``CLEAR_LAG_MS`` after it."""
        at_ms += CLEAR_LAG_MS
        kept: deque[tuple[int, bytes]] = deque()
        for start_ms, pcm in self._segments:
            if start_ms < at_ms:
                kept.append((start_ms, pcm[: (at_ms - start_ms) * self._bytes_per_ms]))
        self._segments = kept
        if self._end_ms is not None:
            self._end_ms = min(self._end_ms, at_ms)

    def process(self, pcm: bytes, timestamp_ms: int) -> bytes:
        """Return the caller's frame (``frame_ms`` of PCM16 mono, starting at media time
        ``timestamp_ms``) with the bot's echo removed; the frame itself when no bot audio has
        played within ``tail_ms`` (nothing to cancel).

        Frames must come in media-time order.

        Raises:
            ValueError: ``pcm`` is not exactly ``frame_ms`` long.
        """
        frame_bytes = self.frame_ms * self._bytes_per_ms
        if len(pcm) != frame_bytes:
            raise ValueError(f"a {self.frame_ms} ms frame is {frame_bytes} bytes, got {len(pcm)}")
        if self._end_ms is None or timestamp_ms >= self._end_ms + self.tail_ms:
            self._segments.clear()
            if self.detector is not None:
                self.detector.reset()  # the next frames it sees will not follow these
            return pcm
        if self._segments and timestamp_ms + self.frame_ms <= self._segments[0][0]:
            return pcm  # the first sentence has not started playing yet
        far = self._reference(timestamp_ms, frame_bytes)
        far_energy = _energy(far)
        self._recent_far_energy.append(far_energy)
        echo = Echo.PRESENT if self.detector is None else self.detector.push(far, pcm, far_energy)
        previous, self._echo_state = self._echo_state, echo
        if echo is not previous and self.detector is not None:
            log.info("echo on the caller's line: %s at %d ms (NCC %.2f)", echo.value, timestamp_ms, self.detector.last_ncc or 0.0)
        if echo is Echo.ABSENT:
            return pcm  # a handset: the canceller would only take away the caller's words
        if previous is Echo.ABSENT:  # the caller switched to the speakerphone: the canceller has to learn again
            self._learn_ms_left = self._learn_ms
        if far_energy > 0 and self._learn_ms_left > 0:
            self._learn_ms_left -= self.frame_ms
        if self._processor is None:
            self._processor = self._make_processor(self.sample_rate)
        block = _BLOCK_MS * self._bytes_per_ms
        out = bytearray()
        for offset in range(0, frame_bytes, block):
            self._processor.far(far[offset : offset + block])
            out += self._processor.near(pcm[offset : offset + block])
        if echo is Echo.UNKNOWN or self._learn_ms_left > 0:
            if _energy(pcm) <= max(self._recent_far_energy) * self._gate_ratio:
                return bytes(frame_bytes)  # could be all echo: the VAD must not hear it
            if echo is Echo.UNKNOWN:
                return pcm  # the canceller's output would take away a handset caller's words
        return bytes(out)

    def _reference(self, timestamp_ms: int, frame_bytes: int) -> bytes:
        """The bot audio that plays during [timestamp_ms, timestamp_ms + frame_ms), silence where none."""
        while self._segments:  # drop what has finished playing
            start_ms, pcm = self._segments[0]
            if start_ms + len(pcm) // self._bytes_per_ms > timestamp_ms:
                break
            self._segments.popleft()
        far = bytearray(frame_bytes)
        frame_end_ms = timestamp_ms + self.frame_ms
        for start_ms, pcm in self._segments:
            if start_ms >= frame_end_ms:
                break
            begin_ms = max(start_ms, timestamp_ms)
            end_ms = min(start_ms + len(pcm) // self._bytes_per_ms, frame_end_ms)
            if end_ms <= begin_ms:
                continue
            src = (begin_ms - start_ms) * self._bytes_per_ms
            dst = (begin_ms - timestamp_ms) * self._bytes_per_ms
            length = (end_ms - begin_ms) * self._bytes_per_ms
            far[dst : dst + length] = pcm[src : src + length]
        return bytes(far)


def _energy(pcm: bytes) -> float:
    """Mean square of PCM16 samples (full scale = 1)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.mean(samples * samples)) / (32768.0 * 32768.0) if samples.size else 0.0
