"""Utterance detection (endpointing) over a stream of VAD frames.

A state machine after pipecat's ``VADState`` (QUIET → STARTING → SPEAKING →
STOPPING) with the padded ring buffer of py-webrtcvad's ``vad_collector``:

* QUIET / STARTING: the last ``start_window_ms + pre_roll_ms`` of frames are kept
  in a ring buffer. An utterance starts when at least ``start_ms`` of voiced
  frames fall within the last ``start_window_ms``. Its audio begins
  ``pre_roll_ms`` (rounded up to whole frames) before the first voiced frame of
  that window, so first syllables are not cut.
* SPEAKING / STOPPING: frames are appended to the utterance. It ends when
  ``stop_ms`` of non-speech follow the last voiced frame. The utterance audio
  then ends exactly at the end of the last voiced frame: the trailing non-speech
  is trimmed (it stays in the ring buffer as possible pre-roll of the next
  utterance, never before the previous utterance's end).
* Optionally (``pause_ms`` > 0), once per pause: when ``pause_ms`` of non-speech
  follow the last voiced frame but the utterance has not ended yet, a
  ``SpeechPaused`` carries the utterance as it would end there, so recognition
  can start speculatively. If the pause becomes the endpoint, the
  ``UtteranceEnded`` has the same ``voice_start_ms``, ``end_ms`` and audio.
* An utterance whose buffered audio (pre-roll and any trailing non-speech
  included) reaches ``max_utterance_ms`` is cut (``forced=True``), still trimmed
  to its last voiced frame, so a cut that falls in a pause gives a shorter
  utterance. If the frame at the cut is voiced, the next voiced frame within
  ``stop_ms`` starts a new utterance at once, without waiting for ``start_ms``
  of speech; otherwise the usual start rule applies (pre-roll keeps the audio).

All decisions follow the ``timestamp_ms`` values passed in (Twilio's media clock),
never a wall clock. Work per frame is O(1) amortised.
"""

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from audio.constants import FRAME_MS, MULAW_SAMPLE_RATE, VAD_FRAME_MS, VAD_SAMPLE_RATES
from audio.errors import AudioFormatError


@dataclass(frozen=True)
class EndpointingConfig:
    """Parameters of the :class:`Endpointer`. All durations are in ms.

    Attributes:
        frame_ms: Frame duration: 10, 20 or 30.
        sample_rate: Sample rate of the frames in Hz: 8000, 16000, 32000 or 48000.
        start_ms: Voiced audio needed within ``start_window_ms`` to start an utterance.
        start_window_ms: Sliding window in which ``start_ms`` of voiced frames are counted.
        stop_ms: Non-speech after the last voiced frame that ends an utterance.
        pre_roll_ms: Audio kept before the first voiced frame.
        max_utterance_ms: Longest utterance audio (pre-roll included) before a forced cut.
        pause_ms: Non-speech after the last voiced frame that emits a ``SpeechPaused``
            (speculative recognition); 0 for never. A value >= ``stop_ms`` never fires.

    Raises:
        ValueError: A value is out of range (see ``__post_init__``).
    """

    frame_ms: int = FRAME_MS
    sample_rate: int = MULAW_SAMPLE_RATE
    start_ms: int = 200
    start_window_ms: int = 300
    stop_ms: int = 600
    pre_roll_ms: int = 300
    max_utterance_ms: int = 15000
    pause_ms: int = 0

    def __post_init__(self) -> None:
        if self.frame_ms not in VAD_FRAME_MS:
            raise ValueError(f"frame_ms must be one of {VAD_FRAME_MS}, got {self.frame_ms!r}")
        if self.sample_rate not in VAD_SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {VAD_SAMPLE_RATES} Hz, got {self.sample_rate!r}")
        if not 0 < self.start_ms <= self.start_window_ms:
            raise ValueError(f"need 0 < start_ms <= start_window_ms, got {self.start_ms}, {self.start_window_ms}")
        if self.stop_ms <= 0:
            raise ValueError(f"stop_ms must be > 0, got {self.stop_ms}")
        if self.pre_roll_ms < 0:
            raise ValueError(f"pre_roll_ms must be >= 0, got {self.pre_roll_ms}")
        if self.pause_ms < 0:
            raise ValueError(f"pause_ms must be >= 0, got {self.pause_ms}")
        if self.max_utterance_ms <= self.start_window_ms + self.pre_roll_ms + self.frame_ms:
            raise ValueError("max_utterance_ms must exceed start_window_ms + pre_roll_ms + frame_ms")

    @property
    def frame_bytes(self) -> int:
        """Size of one frame in bytes (PCM16 mono)."""
        return self.sample_rate // 1000 * self.frame_ms * 2


@dataclass(frozen=True)
class Utterance:
    """The audio of one utterance.

    Attributes:
        pcm: PCM16 signed little-endian mono at ``config.sample_rate`` Hz, covering
            ``start_ms`` to ``end_ms`` (pre-roll included, trailing non-speech trimmed).
        start_ms: Media time of the first sample kept (pre-roll included).
        voice_start_ms: Media time of the first voiced frame.
        end_ms: Media time just after the last voiced frame.
        forced: True when cut at ``max_utterance_ms`` or closed by ``Endpointer.finish()``.
    """

    pcm: bytes
    start_ms: int
    voice_start_ms: int
    end_ms: int
    forced: bool

    @property
    def duration_ms(self) -> int:
        """Length of ``pcm`` in ms (``end_ms - start_ms``)."""
        return self.end_ms - self.start_ms


@dataclass(frozen=True)
class SpeechStarted:
    """An utterance has started.

    Attributes:
        voice_start_ms: Media time of its first voiced frame.
        detected_ms: Media time at which the start was decided (end of the deciding frame).
    """

    voice_start_ms: int
    detected_ms: int


@dataclass(frozen=True)
class SpeechPaused:
    """The caller paused for ``pause_ms``: the utterance as it would end if the pause became the endpoint.

    Attributes:
        utterance: What ``UtteranceEnded`` would carry now (``forced=False``). The
            endpoint is the same utterance when its ``voice_start_ms`` and ``end_ms`` match.
        detected_ms: Media time at which the pause was decided (end of the deciding frame).
    """

    utterance: Utterance
    detected_ms: int


@dataclass(frozen=True)
class UtteranceEnded:
    """An utterance has ended.

    Attributes:
        utterance: The utterance and its audio.
        detected_ms: Media time at which the end was decided (end of the deciding
            frame; for ``finish()``, the end of the last frame pushed).
    """

    utterance: Utterance
    detected_ms: int


class _State(enum.Enum):
    QUIET = "quiet"  # no voiced frame in the start window
    STARTING = "starting"  # some voiced frames, fewer than start_ms
    SPEAKING = "speaking"  # in an utterance, last frame voiced
    STOPPING = "stopping"  # in an utterance, trailing non-speech shorter than stop_ms


_IN_SPEECH = frozenset((_State.SPEAKING, _State.STOPPING))


class Endpointer:
    """Find utterances in a stream of fixed-length PCM16 frames.

    Sans-I/O: call :meth:`push` for every frame in media-time order (for example
    the frames of ``audio.framing.FrameAssembler``), handle the events it returns,
    and call :meth:`finish` when the stream ends.

    Args:
        config: Durations, frame size and sample rate.
        is_speech: Classifier called once per frame with the frame's PCM16 bytes
            (for example ``audio.vad.WebRtcVad(...).is_speech``).
    """

    def __init__(self, config: EndpointingConfig, is_speech: Callable[[bytes], bool]) -> None:
        self.config = config
        self._is_speech = is_speech
        self._frame_bytes = config.frame_bytes
        self._bytes_per_ms = config.sample_rate // 1000 * 2
        self._max_bytes = config.max_utterance_ms * self._bytes_per_ms
        # One extra frame so a pre-roll that is not a whole number of frames is rounded up.
        self._ring_span_ms = config.start_window_ms + config.pre_roll_ms + config.frame_ms
        self.reset()

    def reset(self) -> None:
        """Forget all state: buffered audio, any utterance in progress, and the clock."""
        self._state = _State.QUIET
        self._next_ms: int | None = None  # timestamp the next frame should have
        self._ring: deque[tuple[int, bytes]] = deque()  # (timestamp_ms, frame) for pre-roll
        self._window: deque[tuple[int, bool]] = deque()  # (timestamp_ms, voiced) in the start window
        self._voiced_in_window = 0
        self._pcm = bytearray()  # audio of the utterance in progress
        self._start_ms = 0
        self._voice_start_ms = 0
        self._last_voiced_end_ms = 0
        self._voiced_bytes = 0  # len(self._pcm) at the end of the last voiced frame
        self._resume_until_ms: int | None = None  # after a forced cut in speech
        self._pause_reported = False  # a SpeechPaused was emitted for the current pause

    @property
    def voiced_ms(self) -> int:
        """Media time from the first to the end of the last voiced frame of the utterance in
        progress, ms (pauses inside it included); 0 when not in speech."""
        return self._last_voiced_end_ms - self._voice_start_ms if self._state in _IN_SPEECH else 0

    @property
    def voiced_in_window_ms(self) -> int:
        """Voiced audio among the last ``start_window_ms`` of frames, ms: above 0 outside an
        utterance, the caller may be starting to speak."""
        return self._voiced_in_window * self.config.frame_ms

    @property
    def in_speech(self) -> bool:
        """True between a ``SpeechStarted`` and its ``UtteranceEnded``."""
        return self._state in _IN_SPEECH

    def push(self, frame: bytes, timestamp_ms: int) -> list[SpeechStarted | SpeechPaused | UtteranceEnded]:
        """Classify one frame and advance the state machine.

        Frames are expected back to back. A frame later than the end of the
        previous one marks a discontinuity: the missing time counts as
        non-speech (it can end an utterance; a shorter gap inside an utterance is
        filled with zeros in its audio), and buffered pre-roll is dropped.

        Args:
            frame: One frame: ``config.frame_bytes`` bytes of PCM16 signed
                little-endian mono at ``config.sample_rate`` Hz.
            timestamp_ms: Media time of the frame's first sample, in ms.

        Returns:
            Events decided by this frame, in order (an ``UtteranceEnded`` can be
            followed by a ``SpeechStarted`` in the same list).

        Raises:
            AudioFormatError: ``frame`` is not exactly one frame long.
            TypeError: ``timestamp_ms`` is not an int.
            ValueError: ``timestamp_ms`` is earlier than the end of the previous frame.
        """
        if len(frame) != self._frame_bytes:
            raise AudioFormatError(f"expected a frame of {self._frame_bytes} bytes, got {len(frame)}")
        if type(timestamp_ms) is not int and (isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int)):
            raise TypeError(f"timestamp_ms must be an int, got {type(timestamp_ms).__name__}")
        events: list[SpeechStarted | SpeechPaused | UtteranceEnded] = []
        if self._next_ms is not None and timestamp_ms != self._next_ms:
            if timestamp_ms < self._next_ms:
                raise ValueError(f"frame at {timestamp_ms} ms overlaps the previous frame (ends at {self._next_ms} ms)")
            events.extend(self._skip_to(timestamp_ms))

        if type(frame) is not bytes:
            frame = bytes(frame)  # the ring keeps it: do not alias a caller's mutable buffer
        voiced = bool(self._is_speech(frame))
        config = self.config
        end_ms = timestamp_ms + config.frame_ms
        self._next_ms = end_ms
        # The ring and the window are kept in every state, so the non-speech that
        # ends one utterance can serve as pre-roll for the next.
        ring = self._ring
        ring.append((timestamp_ms, frame))
        oldest_ms = end_ms - self._ring_span_ms
        while ring[0][0] < oldest_ms:
            ring.popleft()
        window = self._window
        window.append((timestamp_ms, voiced))
        self._voiced_in_window += voiced
        oldest_ms = end_ms - config.start_window_ms
        while window[0][0] < oldest_ms:
            self._voiced_in_window -= window.popleft()[1]
        # Resume only if the pause since the cut is shorter than stop_ms (what would not end an utterance).
        if self._resume_until_ms is not None and timestamp_ms >= self._resume_until_ms:
            self._resume_until_ms = None

        if self._state not in _IN_SPEECH:
            if voiced and self._resume_until_ms is not None:
                events.append(self._start(voice_start_ms=timestamp_ms, detected_ms=end_ms))
            elif self._voiced_in_window * self.config.frame_ms >= self.config.start_ms:
                first_voiced_ms = next(ts for ts, v in self._window if v)
                events.append(self._start(voice_start_ms=first_voiced_ms, detected_ms=end_ms))
            else:
                self._state = _State.STARTING if self._voiced_in_window else _State.QUIET
            return events

        self._pcm += frame
        if voiced:
            self._state = _State.SPEAKING
            self._last_voiced_end_ms = end_ms
            self._voiced_bytes = len(self._pcm)
            self._pause_reported = False
        else:
            self._state = _State.STOPPING
        if not voiced and end_ms - self._last_voiced_end_ms >= self.config.stop_ms:
            events.append(self._end(detected_ms=end_ms, forced=False))
        elif len(self._pcm) >= self._max_bytes:
            events.append(self._end(detected_ms=end_ms, forced=True))
            if voiced:  # cut mid-speech: let the next voiced frame start a new utterance at once
                self._resume_until_ms = end_ms + self.config.stop_ms
        elif (
            not voiced and self.config.pause_ms and not self._pause_reported
            and end_ms - self._last_voiced_end_ms >= self.config.pause_ms
        ):
            self._pause_reported = True
            events.append(SpeechPaused(utterance=self._utterance(forced=False), detected_ms=end_ms))
        return events

    def finish(self) -> list[UtteranceEnded]:
        """End of stream: close an utterance in progress and reset.

        Returns:
            ``[UtteranceEnded]`` with ``forced=True`` (audio trimmed to the last
            voiced frame) if an utterance was in progress, else ``[]``.
        """
        events = []
        if self.in_speech:
            events.append(self._end(detected_ms=self._next_ms, forced=True))
        self.reset()
        return events

    def _start(self, voice_start_ms: int, detected_ms: int) -> SpeechStarted:
        """Open an utterance with the ring buffer's frames from the pre-roll on."""
        earliest_ms = voice_start_ms - self.config.pre_roll_ms
        # Keep every frame that holds audio after earliest_ms (rounds the pre-roll up).
        frames = [(ts, f) for ts, f in self._ring if ts + self.config.frame_ms > earliest_ms]
        self._pcm = bytearray(b"".join(f for _, f in frames))
        self._start_ms = frames[0][0]
        self._voice_start_ms = voice_start_ms
        self._last_voiced_end_ms = detected_ms  # the deciding frame is always voiced
        self._voiced_bytes = len(self._pcm)
        self._state = _State.SPEAKING
        self._resume_until_ms = None
        self._pause_reported = False
        return SpeechStarted(voice_start_ms=voice_start_ms, detected_ms=detected_ms)

    def _end(self, detected_ms: int, forced: bool) -> UtteranceEnded:
        """Close the utterance at its last voiced frame and return to QUIET."""
        end_ms = self._last_voiced_end_ms
        utterance = self._utterance(forced)
        self._pcm = bytearray()
        # Audio before end_ms belongs to this utterance: never reuse it as pre-roll or start evidence.
        while self._ring and self._ring[0][0] < end_ms:
            self._ring.popleft()
        while self._window and self._window[0][0] < end_ms:
            self._voiced_in_window -= self._window.popleft()[1]
        self._state = _State.STARTING if self._voiced_in_window else _State.QUIET
        return UtteranceEnded(utterance=utterance, detected_ms=detected_ms)

    def _utterance(self, forced: bool) -> Utterance:
        """The utterance in progress, trimmed to its last voiced frame."""
        return Utterance(
            pcm=bytes(self._pcm[: self._voiced_bytes]),
            start_ms=self._start_ms,
            voice_start_ms=self._voice_start_ms,
            end_ms=self._last_voiced_end_ms,
            forced=forced,
        )

    def _skip_to(self, timestamp_ms: int) -> list[UtteranceEnded]:
        """Handle frames missing between the previous frame and ``timestamp_ms``."""
        events = []
        if self.in_speech:
            if timestamp_ms - self._last_voiced_end_ms >= self.config.stop_ms:
                events.append(self._end(detected_ms=timestamp_ms, forced=False))
            else:
                # Keep the utterance audio aligned with media time.
                self._pcm += bytes((timestamp_ms - self._next_ms) * self._bytes_per_ms)
        # Pre-roll and start evidence must be contiguous with what follows.
        self._ring.clear()
        self._window.clear()
        self._voiced_in_window = 0
        if not self.in_speech:
            self._state = _State.QUIET
        return events
