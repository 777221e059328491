"""Sample-rate conversion with soxr (libsoxr, "HQ" quality).

soxr low-pass filters before decimating, so TTS audio at 22 050/24 000 Hz can go
down to the 8000 Hz phone line without aliasing (a 6 kHz tone at 24 kHz comes out
more than 60 dB down, ``tests/test_resample.py``; ``audioop.ratecv``, which does not filter,
passes it at 0 dB).

Arrays are mono 1-D. ``int16`` in gives ``int16`` out; ``float32``/``float64`` in
gives ``float32`` out (nominal range [-1, 1]).

``int16`` audio is resampled in float32 and rounded back to int16 here, because
soxr's own int16 output adds TPDF dither seeded per resampler instance, so the
same input gave outputs differing by up to 2 LSB from one run to the next.
Going through float32 keeps results deterministic.
"""

import numpy as np
import soxr

from audio.errors import AudioFormatError

QUALITY = "HQ"
QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")
"""soxr's quality recipes, lowest first."""


def _check_rate(name: str, rate: int) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise AudioFormatError(f"{name} must be a positive integer in Hz, got {rate!r}")


def _as_mono(samples: np.ndarray) -> np.ndarray:
    """Return ``samples`` as a contiguous 1-D int16 or float32 array."""
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise AudioFormatError(f"expected a 1-D mono array, got shape {samples.shape}")
    if samples.dtype == np.int16:
        return np.ascontiguousarray(samples)
    if samples.dtype in (np.float32, np.float64):
        return np.ascontiguousarray(samples, dtype=np.float32)
    raise AudioFormatError(f"expected int16, float32 or float64 samples, got {samples.dtype}")


def _to_float32(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float32) * np.float32(1 / 32768)


def _to_int16(samples: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(samples * np.float32(32768)), -32768, 32767).astype(np.int16)


def resample(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Resample a whole mono signal in one call.

    Args:
        samples: 1-D ``int16`` or ``float32``/``float64`` array at ``in_rate`` Hz.
        in_rate: Input sample rate in Hz.
        out_rate: Output sample rate in Hz.

    Returns:
        1-D array at ``out_rate`` Hz of about ``len(samples) * out_rate / in_rate``
        samples, aligned with the input (soxr compensates its filter delay):
        ``int16`` for ``int16`` input, ``float32`` for float input. When the rates
        are equal, ``samples`` itself is returned unchanged (same object and dtype).

    Raises:
        AudioFormatError: ``samples`` is not 1-D or has another dtype, or a rate is
            not a positive integer.
    """
    _check_rate("in_rate", in_rate)
    _check_rate("out_rate", out_rate)
    if in_rate == out_rate:
        _as_mono(samples)  # validate only
        return samples
    mono = _as_mono(samples)
    if mono.size == 0:
        return mono.copy()
    if mono.dtype == np.int16:
        return _to_int16(soxr.resample(_to_float32(mono), in_rate, out_rate, quality=QUALITY))
    return soxr.resample(mono, in_rate, out_rate, quality=QUALITY)


class StreamResampler:
    """Resample a mono signal that arrives in chunks, keeping the filter state between them.

    Joined outputs equal one-shot :func:`resample` of the joined input within a few
    LSB. soxr holds back part of the output (tens of ms at "HQ") until more input
    arrives or :meth:`flush` is called.

    Args:
        in_rate: Input sample rate in Hz.
        out_rate: Output sample rate in Hz.
        dtype: Sample type of the stream, ``"int16"`` (default) or ``"float32"``.
            Every chunk must be of that type (``float64`` is accepted for a
            ``"float32"`` stream and converted).
        quality: soxr quality recipe, one of :data:`QUALITIES` (default ``"HQ"``).
            A lower one holds back less output: at 24 000 → 16 000 Hz, "LQ" holds
            back 180 samples on average (11 ms) and "HQ" 358 (22 ms), both with more
            than 100 dB stopband; "LQ" is flat (-0.3 dB) to 6 kHz only.

    Raises:
        AudioFormatError: A rate is not a positive integer, or ``dtype`` or ``quality``
            is not supported.
    """

    def __init__(self, in_rate: int, out_rate: int, dtype: str = "int16", quality: str = QUALITY) -> None:
        _check_rate("in_rate", in_rate)
        _check_rate("out_rate", out_rate)
        if dtype not in ("int16", "float32"):
            raise AudioFormatError(f"dtype must be 'int16' or 'float32', got {dtype!r}")
        if quality not in QUALITIES:
            raise AudioFormatError(f"quality must be one of {QUALITIES}, got {quality!r}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.dtype = np.dtype(dtype)
        # Equal rates: pass chunks through instead of running the filter.
        self._stream = None if in_rate == out_rate else soxr.ResampleStream(
            in_rate, out_rate, 1, dtype="float32", quality=quality
        )

    def _check(self, samples: np.ndarray) -> np.ndarray:
        mono = _as_mono(samples)
        if mono.dtype != self.dtype:
            raise AudioFormatError(f"this stream takes {self.dtype} samples, got {np.asarray(samples).dtype}")
        return mono

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Feed the next chunk and return the output that is ready.

        Args:
            samples: 1-D array of the stream's dtype at ``in_rate`` Hz (may be empty).

        Returns:
            1-D array of the stream's dtype at ``out_rate`` Hz; may be shorter than
            the chunk's share (or empty) while the filter fills.

        Raises:
            AudioFormatError: ``samples`` is not 1-D or not of the stream's dtype.
        """
        mono = self._check(samples)
        if self._stream is None:
            return mono.copy()
        if mono.dtype == np.int16:
            return _to_int16(self._stream.resample_chunk(_to_float32(mono)))
        return self._stream.resample_chunk(mono)

    def flush(self) -> np.ndarray:
        """End the signal: return the held-back output and reset for a new signal.

        After this call the resampler starts from a clean state, so it can be
        reused for the next, unrelated signal (for example the next TTS reply).

        Returns:
            1-D array of the stream's dtype at ``out_rate`` Hz (the tail of the signal).
        """
        if self._stream is None:
            return np.zeros(0, dtype=self.dtype)
        tail = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._stream.clear()
        return _to_int16(tail) if self.dtype == np.int16 else tail
