"""Is the bot's voice coming back on the caller's line? An echo detector for ``audio.echo``.

WebRTC's AEC3 (``audio.echo``) assumes an echo until it has learned there is none: on a handset
call (no echo) it took 48 dB (median, 20 ms frames) off a caller talking over the bot in the
first seconds of bot audio (measured: docs/benchmarks.md, "Echo on a speakerphone"). So the
canceller's output is used only once an echo has been found, and a line found to carry none
goes through untouched. The test is the normalized cross-correlation (NCC) of the caller's
audio with the bot audio played up to ``MAX_LAG_MS`` earlier, both pre-emphasized (speech is
mostly low frequencies, so unrelated speech correlates by chance: up to 0.28 over 1000 lags
without it, 0.20 with it). An echo peaks at the same delay test after test; chance peaks land
anywhere. Measured on the corpus (bot: 6 recordings; caller talking over it all along: 10 others;
room echoes at -10/-20/-30 dB, 50/160/300 ms, RT60 0.3/0.6 s; 1 s windows, lags 0-1000 ms): two
tests in a row at >= 0.15 within 5 ms of each other found 106 of 108 echoes (median after 2 s of
bot audio, at most 4.5 s) and 0 of 60 talking callers.

Sans-I/O: frames of the bot audio as it plays (the reference) and of the caller's line come in
pairs, in media-time order; no clock reads.
"""

from __future__ import annotations

import enum
from collections import deque

import numpy as np


class Echo(enum.Enum):
    UNKNOWN = "unknown"  # not enough bot audio heard yet to tell
    PRESENT = "present"  # the caller's line carries the bot's voice back (a speakerphone)
    ABSENT = "absent"  # nothing of the bot's voice comes back loud enough to matter (a handset)


WINDOW_MS = 1000
"""Length of caller audio each test correlates, ms."""

MAX_LAG_MS = 1000
"""Longest delay from sending bot audio to its echo arriving that is looked for, ms: the echo
path (50-300 ms on a speakerphone) plus both network legs and Twilio's buffers."""

HOP_MS = 500
"""Bot audio played between two tests, ms (the first test is after this much)."""

ECHO_NCC = 0.15
"""NCC peak (pre-emphasized) that, reached in two tests in a row at the same delay, shows the bot's
voice on the line (room echoes: median 0.27; a caller's speech: median 0.06, 99th percentile 0.14)."""

LAG_TOLERANCE_MS = 5
"""How far apart the two peaks' delays may be, ms."""

PRE_EMPHASIS = 0.95
"""y[n] = x[n] - 0.95 x[n-1] on both signals before the NCC (a first-order high-pass that
flattens speech's spectrum)."""

QUIET_DB = 35.0
"""The caller's line this far below the bot audio of the same window, or further, carries no echo
worth cancelling (the VAD does not hear an echo 35 dB down), dB."""

QUIET_TESTS = 2
"""Tests with the line that quiet (and no echo found) after which it is taken to carry none."""

UNRELATED_NCC = 0.1
UNRELATED_TESTS = 4
UNRELATED_OF = 6
"""A line with sound on it (noise, a caller talking) whose NCC was under ``UNRELATED_NCC`` in
``UNRELATED_TESTS`` of the last ``UNRELATED_OF`` tests is taken to carry no echo that matters.
Measured: street noise and music 10-20 dB under the bot peak at 0.045 (median), 0.093 at most,
and all 24 such lines and all 60 talking callers were judged no echo (median after 2 s of bot
audio; with 6 tests in a row under 0.08 instead, 16 of 24 and 19 of 60 within the recordings,
and a real call in street noise stayed undecided, its caller gated, for 26 s); none of the 108
room echoes, or 12 more under street noise, was judged no echo before being found."""

_ACTIVE_ENERGY = 10 ** (-50 / 10)  # bot audio quieter than -50 dBFS says nothing about the echo path


class EchoDetector:
    """Decide from the bot audio played and the caller's line whether there is an echo.

    Args:
        sample_rate: rate of the PCM16 mono frames, Hz.
        frame_ms: length of each pair of frames given to :meth:`push`, ms.

    The decision (:attr:`state`) starts ``UNKNOWN``; it becomes ``PRESENT`` (for good) once a test
    finds the bot's voice on the line, or ``ABSENT`` after ``QUIET_TESTS`` tests found the line
    ``QUIET_DB`` below the bot audio or ``UNRELATED_TESTS`` of the last ``UNRELATED_OF`` found it
    unrelated to it; an
    ``ABSENT`` line that later carries an echo (the caller switched to the speakerphone) becomes
    ``PRESENT``.
    """

    def __init__(self, sample_rate: int, frame_ms: int = 20) -> None:
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.state = Echo.UNKNOWN
        self._frame_samples = sample_rate * frame_ms // 1000
        self._far: deque[np.ndarray] = deque(maxlen=(WINDOW_MS + MAX_LAG_MS) // frame_ms)
        self._near: deque[np.ndarray] = deque(maxlen=WINDOW_MS // frame_ms)
        self._active_ms = 0  # bot audio pushed since the last test
        self._quiet_tests = 0
        self._unrelated: deque[bool] = deque(maxlen=UNRELATED_OF)  # NCC under UNRELATED_NCC, latest tests
        self._last_peak: tuple[float, int] | None = None  # (NCC, lag in samples) of the previous test
        self._lag_tolerance = LAG_TOLERANCE_MS * sample_rate // 1000
        self.last_ncc: float | None = None  # peak of the latest test, for logs and benchmarks

    def reset(self) -> None:
        """Forget the audio (not the decision): the next frames do not follow the last ones."""
        self._far.clear()
        self._near.clear()
        self._active_ms = 0
        self._last_peak = None

    def push(self, far: bytes, near: bytes, far_energy: float | None = None) -> Echo:
        """Take one frame of bot audio playing now (PCM16 mono, silence where none) and the
        caller's frame recorded now (the line as received, before any cancelling); returns the
        decision so far. ``far_energy``: the mean square of ``far`` (full scale 1), if the caller
        has it already.

        Raises:
            ValueError: a frame is not ``frame_ms`` long.
        """
        if len(far) != 2 * self._frame_samples or len(near) != 2 * self._frame_samples:
            raise ValueError(f"frames must be {2 * self._frame_samples} bytes, got {len(far)} and {len(near)}")
        if self.state is Echo.PRESENT:
            return self.state
        far_samples = np.frombuffer(far, dtype="<i2").astype(np.float64)
        self._far.append(far_samples)
        self._near.append(np.frombuffer(near, dtype="<i2").astype(np.float64))
        if far_energy is None:
            far_energy = float(np.mean(far_samples * far_samples)) / 32768.0**2
        if far_energy > _ACTIVE_ENERGY:
            self._active_ms += self.frame_ms
        if self._active_ms >= HOP_MS:
            self._active_ms = 0
            self._test()
        return self.state

    def _test(self) -> None:
        far = np.concatenate(self._far)  # ends with the same frame as the caller's
        # Early in the bot's audio, correlate a shorter window so that half the history is lag.
        frames = min(len(self._near), len(self._far) - min(len(self._far) // 2, MAX_LAG_MS // self.frame_ms))
        near = np.concatenate(list(self._near)[len(self._near) - frames:])
        near_energy = float(np.dot(near, near))
        far_window = far[len(far) - len(near):]
        far_energy = float(np.dot(far_window, far_window))
        if far_energy <= 0:
            return
        peak = ncc_peak(_pre_emphasized(near), _pre_emphasized(far), MAX_LAG_MS * self.sample_rate // 1000)
        previous, self._last_peak = self._last_peak, peak
        self.last_ncc = peak[0]
        self._unrelated.append(self.last_ncc < UNRELATED_NCC)
        if previous is not None and min(previous[0], peak[0]) >= ECHO_NCC and abs(previous[1] - peak[1]) <= self._lag_tolerance:
            self.state = Echo.PRESENT
        elif near_energy < far_energy * 10 ** (-QUIET_DB / 10):
            self._quiet_tests += 1
            if self._quiet_tests >= QUIET_TESTS:
                self.state = Echo.ABSENT
        elif sum(self._unrelated) >= UNRELATED_TESTS:
            self.state = Echo.ABSENT


def _pre_emphasized(x: np.ndarray) -> np.ndarray:
    return np.concatenate((x[:1], x[1:] - PRE_EMPHASIS * x[:-1]))


def ncc_peak(near: np.ndarray, far: np.ndarray, max_lag: int) -> tuple[float, int]:
    """Largest normalized cross-correlation |Σ near[i]·far[i − lag]| / √(Σnear²·Σfar²) of
    ``near`` (n samples) with the ``far`` samples ``lag`` earlier, over lags 0..``max_lag`` samples
    (limited by the far history), and its lag. ``far`` ends where ``near`` ends: ``far[-n:]`` is lag 0.

    Returns (0.0, 0) when either signal is silent.
    """
    n = len(near)
    history = len(far) - n  # far samples before the near window
    lags = min(max_lag, history)
    if n == 0 or lags < 0:
        return 0.0, 0
    near_energy = float(np.dot(near, near))
    if near_energy <= 0:
        return 0.0, 0
    size = 1 << int(np.ceil(np.log2(len(far) + n)))
    # corr[k] = Σ_i far[i + k] · near[i]; lag L is k = history − L
    corr = np.fft.irfft(np.fft.rfft(far, size) * np.conj(np.fft.rfft(near, size)), size)
    starts = history - np.arange(lags + 1)
    cumulative = np.concatenate(([0.0], np.cumsum(far * far)))
    far_energy = cumulative[starts + n] - cumulative[starts]
    ncc = np.zeros(len(starts))
    valid = far_energy > 0
    ncc[valid] = np.abs(corr[starts][valid]) / np.sqrt(far_energy[valid] * near_energy)
    lag = int(np.argmax(ncc))
    return float(ncc[lag]), lag
