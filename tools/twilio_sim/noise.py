"""Background noise on the caller's line: a recording looped under everything the caller sends, at a set SNR.

The SNR is relative to the caller's *active speech level*: the RMS over the 20 ms frames of the
script's speech whose own RMS is within ``ACTIVE_RANGE_DB`` of the loudest frame (the pauses
between words and the silence around them do not lower it; a simplified ITU-T P.56 active level).
The noise level is the RMS of the whole recording (it is looped, so that is its long-term level).
Both are measured at the stream's rate, on the audio as the stream carries it (``speech_level``
takes the script's payloads decoded again). So at ``snr_db`` 10 the noise's RMS is 10 dB below
the speech's active RMS.

Pure: no I/O, no clock reads. numpy and the repository's ``audio.codec`` (through ``MediaFormat``)
are imported when used, so importing this module imports neither.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tools.twilio_sim.frames import FRAME_MS
from tools.twilio_sim.media_format import MULAW_8K, MediaFormat

if TYPE_CHECKING:
    import numpy as np

ACTIVE_RANGE_DB = 30.0  # a frame counts as speech when its RMS is at most this far below the loudest frame's
SNR_DB_MIN, SNR_DB_MAX = -20.0, 60.0  # outside: a typo (a mix that is all noise, or noise below μ-law's floor)


def parse_noise_arg(text: str) -> tuple[str, float]:
    """Split ``--noise FILE:SNR`` into the file path and the SNR in dB.

    The SNR follows the last colon, so a path may contain colons.

    Raises:
        ValueError: no colon, an empty path, or an SNR that is not a number within
            ``SNR_DB_MIN``..``SNR_DB_MAX`` dB.
    """
    path, colon, value = text.rpartition(":")
    if not colon or not path:
        raise ValueError(f"{text!r}: expected FILE:SNR, e.g. tests/data/noise/street.flac:10")
    try:
        snr_db = float(value)
    except ValueError:
        raise ValueError(f"{text!r}: the SNR after the last colon must be a number of dB, got {value!r}") from None
    if not SNR_DB_MIN <= snr_db <= SNR_DB_MAX:  # NaN fails too
        raise ValueError(f"{text!r}: the SNR must be within {SNR_DB_MIN:g}..{SNR_DB_MAX:g} dB, got {value!r}")
    return path, snr_db


def frame_rms(samples, sample_rate: int) -> np.ndarray:
    """RMS of each whole 20 ms frame of ``samples`` (1-D, any numeric dtype; a partial last frame is dropped)."""
    import numpy as np

    size = sample_rate * FRAME_MS // 1000
    count = len(samples) // size
    frames = np.asarray(samples[:count * size], dtype=np.float64).reshape(count, size)
    return np.sqrt(np.mean(frames ** 2, axis=1))


def speech_level(samples, sample_rate: int, active_range_db: float = ACTIVE_RANGE_DB) -> float:
    """Active speech level: RMS over the 20 ms frames within ``active_range_db`` of the loudest frame.

    Args:
        samples: 1-D mono speech at ``sample_rate`` Hz, any scale (int16 or floats); the result is in it.
        sample_rate: Hz.
        active_range_db: frames quieter than the loudest by more than this are pauses, dB.

    Returns:
        The level, in the units of ``samples``; 0.0 when there is no whole frame or all are silent.
    """
    import numpy as np

    rms = frame_rms(samples, sample_rate)
    if not len(rms) or rms.max() == 0:
        return 0.0
    active = rms[rms >= rms.max() * 10 ** (-active_range_db / 20)]
    return float(np.sqrt(np.mean(active ** 2)))


def noise_gain(speech_rms: float, noise_rms: float, snr_db: float) -> float:
    """Linear factor that puts noise of RMS ``noise_rms`` ``snr_db`` dB below speech of RMS ``speech_rms``."""
    return speech_rms / (noise_rms * 10 ** (snr_db / 20))


class LineNoise:
    """Background noise in the caller's microphone, looped, added to every frame the caller sends.

    Mixing is in linear PCM: decode the wire bytes, add the next samples of the noise times the
    gain, round, clip to int16, encode again. The noise loops from its start when it runs out, and
    runs on across frames whatever the script sends (speech, silence while waiting, DTMF ticks).

    Args:
        noise: 1-D mono float samples at ``media_format.sample_rate`` (nominal [-1, 1]); not all zero.
        speech_rms: the caller's active speech level in the same scale (``speech_level`` of the
            script's audio, as floats in [-1, 1]), > 0.
        snr_db: speech level over noise level, dB, within ``SNR_DB_MIN``..``SNR_DB_MAX``.
        media_format: the stream's wire format (μ-law 8 kHz on Twilio, L16 16/24 kHz on SignalWire);
            ``mix`` takes and returns payload bytes in it.

    Attributes:
        gain: the factor applied to ``noise`` (``noise_gain``).

    Raises:
        ValueError: ``noise`` empty, not 1-D or silent; ``speech_rms`` not > 0; ``snr_db`` out of range.
    """

    def __init__(self, noise, speech_rms: float, snr_db: float, media_format: MediaFormat = MULAW_8K):
        import numpy as np

        noise = np.asarray(noise, dtype=np.float64)
        if noise.ndim != 1 or not len(noise) or not np.any(noise):
            raise ValueError("the noise must be 1-D mono samples, not empty and not all silence")
        if not (math.isfinite(speech_rms) and speech_rms > 0):
            raise ValueError(f"the speech level must be > 0, got {speech_rms!r} (no speech in the script's audio?)")
        if not SNR_DB_MIN <= snr_db <= SNR_DB_MAX:
            raise ValueError(f"snr_db must be within {SNR_DB_MIN:g}..{SNR_DB_MAX:g}, got {snr_db!r}")
        self.snr_db = snr_db
        self.media_format = media_format
        self.gain = noise_gain(speech_rms, float(np.sqrt(np.mean(noise ** 2))), snr_db)
        self._scaled = noise * self.gain * 32768  # int16 scale
        self._position = 0  # next noise sample to mix

    def mix(self, payload: bytes) -> bytes:
        """Return the caller's payload (bytes in ``media_format``, whole samples) with the next noise samples added."""
        import numpy as np

        count = len(payload) // self.media_format.sample_width
        indices = (self._position + np.arange(count)) % len(self._scaled)
        self._position = (self._position + count) % len(self._scaled)
        caller = np.frombuffer(self.media_format.to_pcm16(payload), dtype="<i2").astype(np.float64)
        # MediaFormat.encode takes floats in [-1, 1]: it scales by 32768, rounds and clips to int16.
        return self.media_format.encode((caller + self._scaled[indices]) / 32768)
