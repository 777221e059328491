"""WebRTC VAD on a quiet line, confirmed by Silero VAD while the line is noisy (issue #14 part 4).

WebRTC VAD (mode 3) hears an utterance's start early on a clean line but takes street traffic and
music at 10 dB SNR for speech in 98-100 % of frames; Silero VAD ignores them but hears a clean
start 70 ms later at the median (up to 320 ms) and splits utterances at short pauses
(docs/benchmarks.md, "Silero VAD"). :class:`HybridVad` uses WebRTC's decision alone while the two
agree, and WebRTC's AND Silero's while the line is *noisy*:

* Each frame WebRTC rejects is evidence of a quiet line; each it calls speech and Silero does not
  is evidence of noise (a *disagreement*); a frame both call speech says nothing about the line
  (the caller talking, in noise or not) and is skipped. The line turns noisy when at least
  ``enter_share`` of the last ``window_ms`` of evidence is disagreement, and quiet again when at
  most ``leave_share`` is. On clean speech the two differ only around onsets (Silero's lag) and in
  pauses WebRTC fills with room noise, against the silence around the caller's turns; street noise
  and music WebRTC takes for speech are disagreements in nearly every frame.
* A call starts noisy (so noise from the first frame does not start a "turn" before the evidence
  is in) and turns quiet once it has ``settle_ms`` of evidence (200 ms) with at most
  ``leave_share`` of disagreement: a caller silent for that long loses nothing. While the evidence
  is young a few frames of noise turn the line noisy again; noise that begins after a long quiet
  spell is a false start until it makes up ``enter_share`` of the evidence (3.3 s of noise).
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

WINDOW_MS = 5000
ENTER_SHARE = 0.65
LEAVE_SHARE = 0.2
SETTLE_MS = 200
CATCH_UP_MS = 160


class HybridVad:
    """Classify the frames of one stream as speech: WebRTC VAD, and Silero VAD too while the line is noisy.

    Args:
        mode: WebRTC VAD aggressiveness, 0 … 3.
        sample_rate: Sample rate of the frames in Hz: 8000 or 16000 (Silero's rates).
        frame_ms: Frame duration in ms: 10, 20 or 30.
        window_ms: Evidence kept (frames not called speech by both), ms.
        enter_share: Share of disagreement in the evidence at which the line turns noisy.
        leave_share: Share at or under which it turns quiet again.
        settle_ms: Evidence needed before the line is first judged quiet, ms.
        catch_up_ms: Frames WebRTC rejected that are kept for Silero's next run, ms.
        model_path: Silero's ONNX model; default ``audio.silero_vad.default_model_path()``.

    Raises:
        AudioFormatError: ``mode``, ``sample_rate`` or ``frame_ms`` is not one of the values above.
        ValueError: Not ``0 <= leave_share < enter_share <= 1``, ``window_ms`` under one frame,
            or ``settle_ms`` or ``catch_up_ms`` negative or ``settle_ms`` over ``window_ms``.
        FileNotFoundError: No Silero model file.
    """

    def __init__(self, mode: int = 3, sample_rate: int = MULAW_SAMPLE_RATE, frame_ms: int = FRAME_MS,
                 window_ms: int = WINDOW_MS, enter_share: float = ENTER_SHARE, leave_share: float = LEAVE_SHARE,
                 settle_ms: int = SETTLE_MS, catch_up_ms: int = CATCH_UP_MS,
                 model_path: str | Path | None = None) -> None:
        if not 0 <= leave_share < enter_share <= 1:
            raise ValueError(f"need 0 <= leave_share < enter_share <= 1, got {leave_share}, {enter_share}")
        if window_ms < frame_ms or not 0 <= settle_ms <= window_ms or catch_up_ms < 0:
            raise ValueError(f"need frame_ms <= window_ms, 0 <= settle_ms <= window_ms and catch_up_ms >= 0, "
                             f"got {window_ms}, {settle_ms}, {catch_up_ms}")
        self._webrtc = WebRtcVad(mode=mode, sample_rate=sample_rate, frame_ms=frame_ms)
        self._silero = SileroVad(sample_rate=sample_rate, frame_ms=frame_ms, model_path=model_path)
        self.frame_ms = frame_ms
        self.sample_rate = sample_rate
        self._window: deque[bool] = deque(maxlen=window_ms // frame_ms)  # evidence: True for a disagreement
        self._disagreements = 0  # True in self._window
        self.enter_share = enter_share
        self.leave_share = leave_share
        self._settle = settle_ms // frame_ms  # evidence before the first judgement of quiet
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
        if webrtc:
            if self._run_silero(frame):  # both hear speech: no evidence about the line
                return True
        else:
            self._held.append(frame)
        window = self._window
        if len(window) == window.maxlen:
            self._disagreements -= window[0]
        window.append(webrtc)  # webrtc here means a disagreement
        self._disagreements += webrtc
        if self.noisy:
            if len(window) >= self._settle and self._disagreements <= self.leave_share * len(window):
                self.noisy = False
        elif self._disagreements >= self.enter_share * len(window):
            self.noisy = True
        return webrtc and not self.noisy

    def _run_silero(self, frame: bytes) -> bool:
        """Silero's decision on ``frame``, after the held frames."""
        if self._held:
            for held in self._held:
                self._silero.is_speech(held)
            self._held.clear()
        return self._silero.is_speech(frame)
