"""Test helper: put real recordings through a telephone line (8 kHz G.711 μ-law round trip).

Uses the project's codec (``audio.codec``) and soxr, the same way the server's
inbound path sees caller audio.
"""

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from audio.codec import array_to_ulaw, ulaw_to_pcm16

CORPUS = Path(__file__).resolve().parent / "data"
PHONE_SAMPLE_RATE = 8000


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    """Read an audio file as float64 mono in [-1, 1] (channels averaged) and its rate in Hz."""
    samples, sample_rate = sf.read(path, dtype="float64", always_2d=True)
    return samples.mean(axis=1), sample_rate


def to_pcm(samples: np.ndarray) -> bytes:
    """Convert float samples in [-1, 1] (or int16) to PCM16 LE bytes, rounding and clipping."""
    if samples.dtype != np.int16:
        samples = np.clip(np.rint(samples * 32768.0), -32768, 32767).astype(np.int16)
    return samples.astype("<i2").tobytes()


def phone_round_trip(samples: np.ndarray, sample_rate: int) -> bytes:
    """Resample mono audio to 8 kHz (soxr HQ), μ-law encode and decode it.

    Args:
        samples: mono float samples in [-1, 1] or int16, at ``sample_rate`` Hz.
        sample_rate: rate of ``samples`` in Hz.

    Returns:
        PCM16 LE mono at 8000 Hz, as the server receives it from Twilio.
    """
    narrow = soxr.resample(samples, sample_rate, PHONE_SAMPLE_RATE, "HQ")
    return ulaw_to_pcm16(array_to_ulaw(narrow))


def phone_corpus(name: str) -> bytes:
    """Return a corpus file after the telephone round trip (PCM16 LE mono, 8000 Hz)."""
    return phone_round_trip(*read_mono(CORPUS / name))


def reference_text(name: str) -> str:
    """Return the reference transcript stored next to a corpus file (``<stem>.txt``)."""
    return (CORPUS / name).with_suffix(".txt").read_text(encoding="utf-8").strip()
