"""Tests for audio.codec: G.711 μ-law ↔ PCM16, bit-exact with audioop."""

import warnings
from pathlib import Path

import numpy as np
import pytest

from audio.codec import ULAW_SILENCE, array_to_ulaw, pcm16_to_ulaw, ulaw_to_array, ulaw_to_pcm16
from audio.errors import AudioFormatError

REFERENCE = Path(__file__).resolve().parent / "data" / "ulaw_reference.npz"


@pytest.fixture(scope="module")
def reference():
    """audioop's tables, made by tests/data/make_ulaw_reference.py on Python 3.11."""
    with np.load(REFERENCE) as data:
        return {name: data[name] for name in data.files}


def test_reference_table_shape(reference):
    assert np.array_equal(reference["pcm_in"], np.arange(-32768, 32768, dtype=np.int16))
    assert np.array_equal(reference["ulaw_in"], np.arange(256, dtype=np.uint8))
    assert reference["encoded"].dtype == np.uint8 and reference["encoded"].shape == (65536,)
    assert reference["decoded"].dtype == np.int16 and reference["decoded"].shape == (256,)


def test_encode_matches_reference_on_all_65536_inputs(reference):
    pcm = reference["pcm_in"].astype("<i2").tobytes()
    encoded = np.frombuffer(pcm16_to_ulaw(pcm), dtype=np.uint8)
    mismatches = np.flatnonzero(encoded != reference["encoded"])
    assert mismatches.size == 0, f"{mismatches.size} encodes differ, first at {reference['pcm_in'][mismatches[:5]]}"
    assert array_to_ulaw(reference["pcm_in"]) == reference["encoded"].tobytes()


def test_decode_matches_reference_on_all_256_codes(reference):
    ulaw = reference["ulaw_in"].tobytes()
    assert np.array_equal(np.frombuffer(ulaw_to_pcm16(ulaw), dtype="<i2"), reference["decoded"])
    assert np.array_equal(ulaw_to_array(ulaw), reference["decoded"])


def test_matches_live_audioop_when_available():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # stdlib up to 3.12, audioop-lts after
    pcm = np.arange(-32768, 32768, dtype="<i2").tobytes()
    assert pcm16_to_ulaw(pcm) == audioop.lin2ulaw(pcm, 2)
    ulaw = bytes(range(256))
    assert ulaw_to_pcm16(ulaw) == audioop.ulaw2lin(ulaw, 2)


@pytest.mark.parametrize(("code", "sample"), [(0xFF, 0), (0x7F, 0), (0x00, -32124), (0x80, 32124)])
def test_known_vectors(code, sample):
    assert ulaw_to_pcm16(bytes([code])) == int(sample).to_bytes(2, "little", signed=True)
    assert ulaw_to_array(bytes([code]))[0] == sample


def test_silence_code_decodes_to_zero_and_zero_encodes_to_it():
    assert ulaw_to_pcm16(bytes([ULAW_SILENCE]) * 3) == bytes(6)
    assert pcm16_to_ulaw(bytes(4)) == bytes([ULAW_SILENCE]) * 2


def test_round_trip_every_code_except_negative_zero():
    # 0x7F decodes to 0, which encodes back to 0xFF; every other code survives a round trip.
    codes = bytes(c for c in range(256) if c != 0x7F)
    assert pcm16_to_ulaw(ulaw_to_pcm16(codes)) == codes
    assert array_to_ulaw(ulaw_to_array(codes)) == codes


def test_round_trip_error_is_within_the_quantisation_step():
    samples = np.arange(-32768, 32768, dtype=np.int16)
    decoded = ulaw_to_array(array_to_ulaw(samples)).astype(np.int32)
    magnitude = np.abs(samples.astype(np.int32))
    error = np.abs(decoded - samples.astype(np.int32))
    # μ-law keeps 4 mantissa bits: the step is about |x| / 16 (at least 8, since the
    # low 2 bits are dropped); beyond the largest code (32124) values are clipped.
    in_range = magnitude <= 32124
    assert np.all(error[in_range] <= magnitude[in_range] / 16 + 8)
    assert np.all(error[~in_range] <= 32768 - 32124)
    assert np.all(np.sign(decoded[magnitude > 8]) == np.sign(samples[magnitude > 8]))


def test_input_types_and_lengths():
    ulaw = bytes([0x00, 0x80, 0xFF])
    for buffer in (ulaw, bytearray(ulaw), memoryview(ulaw)):
        assert len(ulaw_to_pcm16(buffer)) == 6
    pcm = ulaw_to_pcm16(ulaw)
    for buffer in (pcm, bytearray(pcm), memoryview(pcm)):
        assert pcm16_to_ulaw(buffer) == ulaw
    assert ulaw_to_pcm16(b"") == b"" and pcm16_to_ulaw(b"") == b""
    assert ulaw_to_array(b"").dtype == np.int16 and array_to_ulaw(np.zeros(0, np.int16)) == b""


def test_ulaw_to_array_returns_a_writable_int16_copy():
    array = ulaw_to_array(bytes([0x00, 0x80]))
    assert array.dtype == np.int16 and array.flags.writeable
    array[0] = 1  # must not corrupt the table
    assert ulaw_to_array(bytes([0x00]))[0] == -32124


def test_odd_length_pcm_raises():
    with pytest.raises(AudioFormatError):
        pcm16_to_ulaw(b"\x00\x01\x02")
    assert issubclass(AudioFormatError, ValueError)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_input_is_scaled_by_32768_and_clipped(dtype):
    floats = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -3.0, 1e-6], dtype=dtype)
    expected = np.array([0, 16384, -16384, 32767, -32768, 32767, -32768, 0], dtype=np.int16)
    assert array_to_ulaw(floats) == array_to_ulaw(expected)


def test_float_tone_encodes_like_its_int16_version():
    t = np.arange(800) / 8000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    assert array_to_ulaw(tone) == array_to_ulaw(np.rint(tone * 32768).astype(np.int16))
    assert array_to_ulaw(np.array([np.nan])) == bytes([ULAW_SILENCE])


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 160), np.int16), np.zeros(160, np.int32), np.zeros(160, np.uint8), np.zeros(4, np.int64)]
)
def test_array_to_ulaw_rejects_other_shapes_and_dtypes(bad):
    with pytest.raises(AudioFormatError):
        array_to_ulaw(bad)
