"""Tests for audio.vad: the WebRTC VAD wrapper."""

from pathlib import Path

import numpy as np
import pytest
import soundfile

from audio.errors import AudioFormatError
from audio.resample import resample
from audio.vad import WebRtcVad

CORPUS = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def english_8k() -> np.ndarray:
    """sr_english.wav ("one two three") as int16 mono at 8000 Hz."""
    samples, sample_rate = soundfile.read(CORPUS / "sr_english.wav", dtype="float32", always_2d=True)
    mono_8k = resample(samples.mean(axis=1), sample_rate, 8000)
    return np.clip(np.rint(mono_8k * 32768), -32768, 32767).astype(np.int16)


def frames_of(pcm: bytes, frame_bytes: int) -> list[bytes]:
    return [pcm[i : i + frame_bytes] for i in range(0, len(pcm) - frame_bytes + 1, frame_bytes)]


@pytest.mark.parametrize("sample_rate", [8000, 16000, 32000, 48000])
@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_frame_bytes_and_silence(sample_rate, frame_ms):
    vad = WebRtcVad(mode=3, sample_rate=sample_rate, frame_ms=frame_ms)
    assert vad.frame_bytes == sample_rate * frame_ms // 1000 * 2
    assert vad.is_speech(bytes(vad.frame_bytes)) is False


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_real_speech_is_detected_and_silence_is_not(english_8k, mode):
    vad = WebRtcVad(mode=mode)
    pcm = np.concatenate([np.zeros(8000, np.int16), english_8k, np.zeros(8000, np.int16)])
    flags = [vad.is_speech(frame) for frame in frames_of(pcm.astype("<i2").tobytes(), vad.frame_bytes)]
    lead = 8000 // 160
    speech = flags[lead : lead + len(english_8k) // 160]
    # Energy marks where the words are; most of those frames must be voiced.
    energy = np.array([np.sqrt(np.mean(np.square(f.astype(np.float64)))) for f in np.array_split(
        english_8k[: len(english_8k) // 160 * 160], len(english_8k) // 160)])
    loud = energy > energy.max() * 10 ** (-20 / 20)
    voiced_when_loud = np.mean(np.array(speech)[loud])
    print(f"\nmode {mode}: voiced {np.mean(speech):.2f} of the clip, {voiced_when_loud:.2f} of its loud frames")
    assert voiced_when_loud > 0.8
    assert not any(flags[: lead - 5])  # leading digital silence


def test_accepts_bytes_like_frames(english_8k):
    vad = WebRtcVad()
    frame = english_8k[4000:4160].astype("<i2").tobytes()
    assert isinstance(vad.is_speech(bytearray(frame)), bool)
    assert isinstance(vad.is_speech(memoryview(frame)), bool)


@pytest.mark.parametrize("length", [0, 1, 318, 319, 321, 322, 640])
def test_wrong_frame_length_raises(length):
    with pytest.raises(AudioFormatError):
        WebRtcVad(sample_rate=8000, frame_ms=20).is_speech(bytes(length))


@pytest.mark.parametrize(
    "kwargs",
    [dict(mode=4), dict(mode=-1), dict(mode=True), dict(sample_rate=44100), dict(sample_rate=22050),
     dict(frame_ms=15), dict(frame_ms=40), dict(frame_ms=0)],
)
def test_invalid_parameters_raise(kwargs):
    with pytest.raises(AudioFormatError):
        WebRtcVad(**kwargs)
