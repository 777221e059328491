"""Tests for audio.stream_format: the wire audio of Twilio (μ-law) and SignalWire L16 streams."""

import json
from pathlib import Path

import numpy as np
import pytest
import soxr

from audio.codec import array_to_ulaw, ulaw_to_pcm16
from audio.errors import AudioFormatError
from audio.stream_format import L16, MULAW, MULAW_8K, StreamFormat, stream_format
from tests.phone import CORPUS, read_mono

FIXTURES = Path(__file__).resolve().parent / "data" / "twilio"
L16_RATES = (8000, 16000, 24000)


def media_format(fixture: str) -> dict:
    return json.loads((FIXTURES / fixture).read_text())["start"]["mediaFormat"]


def pcm_array(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.int64)


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    """sr_english.wav: real speech, float64 mono at 44 100 Hz."""
    return read_mono(CORPUS / "sr_english.wav")


def test_twilio_start_gives_mulaw_8k():
    fmt = stream_format(**_kwargs(media_format("start_bidirectional.json")))
    assert fmt is MULAW_8K
    assert (fmt.encoding, fmt.sample_rate, fmt.is_ulaw, fmt.bytes_per_sample) == (MULAW, 8000, True, 1)
    assert fmt.bytes_per_ms == 8 and fmt.processing_rate == 8000


def test_signalwire_l16_24k_start():
    fmt = stream_format(**_kwargs(media_format("signalwire_start.json")))
    assert fmt == StreamFormat(L16, 24000) and not fmt.is_ulaw
    # protocol.md §9: a 20 ms L16@24k media payload is 1280 base64 characters, 960 bytes.
    assert 20 * fmt.bytes_per_ms == 1280 * 3 // 4 == 960
    assert fmt.processing_rate == 16000


@pytest.mark.parametrize("rate", L16_RATES)
def test_l16_sizes_and_rates(rate):
    fmt = stream_format(L16, rate, 1)
    assert fmt.bytes_per_sample == 2 and fmt.bytes_per_ms * 1000 == 2 * rate
    assert fmt.processing_rate == min(rate, 16000)  # the WebRTC VAD takes 8 and 16 kHz, not 24
    assert str(fmt) == f"audio/x-L16@{rate}"


@pytest.mark.parametrize(
    ("encoding", "rate", "channels"),
    [
        (L16, 24000, 2),  # SignalWire documents 2 for both_tracks (unconfirmed): not supported
        (MULAW, 8000, 0),
        ("audio/x-alaw", 8000, 1),
        ("audio/x-l16", 16000, 1),
        (L16, 44100, 1),
        (L16, 32000, 1),
        (MULAW, 16000, 1),
        (L16, "24000", 1),
        (L16, 24000.0, 1),
        (L16, True, 1),
    ],
)
def test_unsupported_formats_raise(encoding, rate, channels):
    with pytest.raises(AudioFormatError):
        stream_format(encoding, rate, channels)
    assert issubclass(AudioFormatError, ValueError)


def test_dataclass_validates_and_is_frozen():
    with pytest.raises(AudioFormatError):
        StreamFormat(L16, 22050)
    with pytest.raises(AttributeError):
        MULAW_8K.sample_rate = 16000


def test_l16_is_little_endian_pcm16():
    fmt = StreamFormat(L16, 16000)
    samples = np.array([1, -2, 0x1234, -32768, 32767], dtype=np.int16)
    wire = fmt.encode(samples, 16000)
    assert wire == b"\x01\x00\xfe\xff\x34\x12\x00\x80\xff\x7f"
    assert fmt.decode(wire) == wire
    with pytest.raises(AudioFormatError):
        fmt.decode(wire[:-1])


def test_mulaw_decode_and_encode_use_g711():
    rng = np.random.default_rng(1)
    ulaw = rng.integers(0, 256, 800, dtype=np.uint8).tobytes()
    assert MULAW_8K.decode(ulaw) == ulaw_to_pcm16(ulaw)
    samples = rng.uniform(-1, 1, 800).astype(np.float32)
    assert MULAW_8K.encode(samples, 8000) == array_to_ulaw(samples)


@pytest.mark.parametrize("fmt", [MULAW_8K] + [StreamFormat(L16, rate) for rate in L16_RATES], ids=str)
def test_real_speech_round_trip(fmt, speech):
    samples, rate = speech
    wire = fmt.encode(samples.astype(np.float32), rate)
    assert len(wire) % fmt.bytes_per_sample == 0
    assert abs(len(wire) / fmt.bytes_per_ms - 1000 * len(samples) / rate) <= 1  # same duration
    decoded = pcm_array(fmt.decode(wire))
    reference = soxr.resample(samples, rate, fmt.sample_rate, "HQ") * 32768
    error = decoded - reference[: len(decoded)]
    if fmt.is_ulaw:  # G.711: 37 dB SNR on this speech
        snr_db = 10 * np.log10(np.sum(reference**2) / np.sum(error**2))
        assert snr_db > 30
    else:  # PCM16: only rounding to the nearest integer (float32 input)
        assert np.max(np.abs(error)) <= 1
    # Decoded wire audio encodes back to the same bytes.
    assert fmt.encode(np.frombuffer(fmt.decode(wire), dtype="<i2").astype(np.int16), fmt.sample_rate) == wire


def test_encode_rejects_bad_input():
    fmt = StreamFormat(L16, 24000)
    with pytest.raises(AudioFormatError):
        fmt.encode(np.zeros((10, 2), dtype=np.float32), 24000)
    with pytest.raises(AudioFormatError):
        fmt.encode(np.zeros(10, dtype=np.int32), 24000)
    with pytest.raises(AudioFormatError):
        fmt.encode(np.zeros(10, dtype=np.float32), 0)


def _kwargs(media_format: dict) -> dict:
    """``start.mediaFormat`` as keyword arguments of ``stream_format``."""
    return {
        "encoding": media_format["encoding"],
        "sample_rate": media_format["sampleRate"],
        "channels": media_format["channels"],
    }


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_decode_at_processing_rate(rate):
    fmt = stream_format(L16, rate)
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype("<i2")  # 1 s
    pcm = np.frombuffer(fmt.decode_at_processing_rate(tone.tobytes()), dtype="<i2")
    assert abs(len(pcm) - fmt.processing_rate) <= 2
    if fmt.processing_rate == rate:
        assert pcm.tobytes() == tone.tobytes()
    else:  # same tone, same level after soxr
        spectrum = np.abs(np.fft.rfft(pcm[: fmt.processing_rate].astype(float)))
        assert abs(np.argmax(spectrum) - 440) <= 1
        assert abs(np.sqrt(np.mean(pcm.astype(float) ** 2)) - 8000 / np.sqrt(2)) < 200
    assert MULAW_8K.decode_at_processing_rate(b"\xff" * 160) == bytes(320)
