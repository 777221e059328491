"""WebRTC VAD on a quiet line, confirmed by Silero VAD while the line is noisy (issue #14 part 4).

WebRTC VAD (mode 3) hears an utterance's start early on a clean line but takes street traffic and
music at 10 dB SNR for speech in 98-100 % of frames; Silero VAD ignores them but hears a clean
start 70 ms later at the median (up to 320 ms) and splits utterances at short pauses
(docs/benchmarks.md, "Silero VAD"). :class:`HybridVad` uses WebRTC's decision alone while the two
agree, and WebRTC's AND Silero's while the line is *noisy*:

* A frame is a *disagreement* when WebRTC calls it speech and Silero does not. The line turns
  noisy when at least ``enter_ms`` of the last ``window_ms`` were disagreements, and quiet again
  when at most ``leave_ms`` were. On clean speech the two differ only around onsets (Silero's lag)
  and in pauses WebRTC fills with room noise, well under ``enter_ms``; noise WebRTC takes for
  speech is a disagreement in nearly every frame.
* A call starts noisy (so noise from the first frame does not start a "turn" before the evidence
  is in) and turns quiet once ``settle_ms`` have passed with at most ``leave_ms`` of disagreement;
  a caller silent for that long, as during the greeting, loses nothing.
* Silero only runs on frames WebRTC calls speech (a frame WebRTC rejects is non-speech either way
  and no disagreement). The last ``catch_up_ms`` of the frames in between are given to Silero
  before the next one it runs on: over gaps that short it sees the stream unbroken, over longer
  ones its recurrent state carries over the skipped audio (measured no worse than starting it
  afresh, and cheaper). On a quiet line with the caller silent the cost per frame is WebRTC's;
  while anything is voiced it is Silero's (docs/benchmarks.md, "WebRTC VAD confirmed by Silero").

Sans-I/O, no clock reads: all durations count frames. Frames are PCM16 signed little-endian mono
at ``sample_rate`` Hz, ``frame_ms`` long.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

from audio.constants import FRAME_MS, MULAW_SAMPLE_RATE
from audio.silero_vad import SileroVad
from audio.vad import WebRtcVad

WINDOW_MS = 2000
ENTER_MS = 800
LEAVE_MS = 200
SETTLE_MS = 1000
CATCH_UP_MS = 160


class HybridVad:
    """Classify the frames of one stream as speech: WebRTC VAD, and Silero VAD too while the line is noisy.

    Args:
        mode: WebRTC VAD aggressiveness, 0 … 3.
        sample_rate: Sample rate of the frames in Hz: 8000 or 16000 (Silero's rates).
        frame_ms: Frame duration in ms: 10, 20 or 30.
        window_ms: The span over which disagreements are counted, ms.
        enter_ms: Disagreement within ``window_ms`` at which the line turns noisy, ms.
        leave_ms: Disagreement within ``window_ms`` at or under which it turns quiet again, ms.
        settle_ms: Time from the first frame before the line may be judged quiet, ms.
        catch_up_ms: Frames WebRTC rejected that are kept for Silero's next run, ms.
        model_path: Silero's ONNX model; default ``audio.silero_vad.default_model_path()``.

    Raises:
        AudioFormatError: ``mode``, ``sample_rate`` or ``frame_ms`` is not one of the values above.
        ValueError: The durations are not ``0 <= leave_ms < enter_ms <= window_ms``, or
            ``settle_ms`` or ``catch_up_ms`` is negative.
        FileNotFoundError: No Silero model file.
    """

    def __init__(self, mode: int = 3, sample_rate: int = MULAW_SAMPLE_RATE, frame_ms: int = FRAME_MS,
                 window_ms: int = WINDOW_MS, enter_ms: int = ENTER_MS, leave_ms: int = LEAVE_MS,
                 settle_ms: int = SETTLE_MS, catch_up_ms: int = CATCH_UP_MS,
                 model_path: str | Path | None = None) -> None:
        if not 0 <= leave_ms < enter_ms <= window_ms:
            raise ValueError(f"need 0 <= leave_ms < enter_ms <= window_ms, got {leave_ms}, {enter_ms}, {window_ms}")
        if settle_ms < 0 or catch_up_ms < 0:
            raise ValueError(f"settle_ms and catch_up_ms must be >= 0, got {settle_ms}, {catch_up_ms}")
        self._webrtc = WebRtcVad(mode=mode, sample_rate=sample_rate, frame_ms=frame_ms)
        self._silero = SileroVad(sample_rate=sample_rate, frame_ms=frame_ms, model_path=model_path)
        self.frame_ms = frame_ms
        self.sample_rate = sample_rate
        self._window = deque(maxlen=max(1, window_ms // frame_ms))  # one disagreement flag per frame
        self._disagreements = 0  # True flags in self._window
        self._enter = enter_ms // frame_ms
        self._leave = leave_ms // frame_ms
        self._settle_left = settle_ms // frame_ms  # frames until the line may be judged quiet
        self._held: deque[bytes] = deque(maxlen=catch_up_ms // frame_ms)  # the last frames Silero has not seen
        self.noisy = True
        """Whether Silero VAD confirms WebRTC's speech (the line was judged noisy)."""

    @property
    def frame_bytes(self) -> int:
        """Size of one frame in bytes (PCM16: 2 bytes per sample)."""
        return self._webrtc.frame_bytes

    def is_speech(self, frame: bytes) -> bool:
        """Tell whether one frame is speech, and update the judgement of the line.

        Args:
            frame: Exactly one frame, ``frame_bytes`` bytes of PCM16 signed little-endian mono
                at ``sample_rate`` Hz. Feed the frames of one stream in order.

        Returns:
            WebRTC VAD's decision on a quiet line; on a noisy line, True only if Silero VAD
            (the decision of its last complete 32 ms window) also calls it speech.

        Raises:
            AudioFormatError: ``frame`` is not exactly ``frame_bytes`` long.
        """
        webrtc = self._webrtc.is_speech(frame)  # checks the length
        disagree = False
        if webrtc:
            silero = self._run_silero(frame)
            disagree = not silero
        else:
            silero = False
            self._held.append(frame)
        window = self._window
        if len(window) == window.maxlen:
            self._disagreements -= window[0]
        window.append(disagree)
        self._disagreements += disagree
        if self._settle_left:
            self._settle_left -= 1
        if self.noisy:
            if self._disagreements <= self._leave and not self._settle_left:
                self.noisy = False
        elif self._disagreements >= self._enter:
            self.noisy = True
        return silero if self.noisy else webrtc

    def _run_silero(self, frame: bytes) -> bool:
        """Silero's decision on ``frame``, after the held frames."""
        if self._held:
            for held in self._held:
                self._silero.is_speech(held)
            self._held.clear()
        return self._silero.is_speech(frame)
