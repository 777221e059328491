"""Tests for audio.wavfile: μ-law/PCM16 WAV files written in place, read back by soundfile."""

import os
import signal
import struct
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio.codec import array_to_ulaw, ulaw_to_array
from audio.errors import AudioFormatError
from audio.wavfile import WavWriter, read_info, repair_header

REPO = Path(__file__).resolve().parents[1]


def tone_ulaw(num_samples: int, frequency_hz: float = 440.0, sample_rate: int = 8000) -> bytes:
    """A μ-law sine tone (amplitude 0.5) covering many codes."""
    t = np.arange(num_samples) / sample_rate
    return array_to_ulaw(0.5 * np.sin(2 * np.pi * frequency_hz * t))


def tone_pcm(num_samples: int, frequency_hz: float, amplitude: int = 8000) -> np.ndarray:
    """A PCM16 sine tone at 8 kHz."""
    t = np.arange(num_samples) / 8000
    return np.rint(amplitude * np.sin(2 * np.pi * frequency_hz * t)).astype("<i2")


def read_int16(path: Path):
    """The file's samples as int16, shape (frames, channels), and soundfile's info."""
    samples, _ = sf.read(path, dtype="int16", always_2d=True)
    return samples, sf.info(path)


def test_ulaw_file_round_trips_all_codes(tmp_path):
    codes = bytes(range(256)) * 4
    with WavWriter(tmp_path / "a.wav", encoding="ulaw", channels=1) as writer:
        writer.write_at(0, codes)
    samples, info = read_int16(tmp_path / "a.wav")
    assert (info.subtype, info.samplerate, info.channels, info.frames) == ("ULAW", 8000, 1, len(codes))
    assert np.array_equal(samples[:, 0], ulaw_to_array(codes))
    with open(tmp_path / "a.wav", "rb") as file:
        assert file.read()[58:] == codes  # stored byte for byte after the 58-byte header


def test_ulaw_header_layout(tmp_path):
    """fmt is 18 bytes with cbSize 0, then a fact chunk with the sample count (WAVE_FORMAT_MULAW)."""
    with WavWriter(tmp_path / "a.wav", encoding="ulaw", channels=1, sample_rate=8000) as writer:
        writer.write_at(0, tone_ulaw(1234))
    raw = (tmp_path / "a.wav").read_bytes()
    assert raw[:4] == b"RIFF" and raw[8:16] == b"WAVE" + b"fmt "
    assert struct.unpack_from("<I", raw, 4)[0] == len(raw) - 8
    fmt_bytes, tag, channels, rate, byte_rate, block_align, bits, cb_size = struct.unpack_from("<IHHIIHHH", raw, 16)
    assert (fmt_bytes, tag, channels, rate, byte_rate, block_align, bits, cb_size) == (18, 7, 1, 8000, 8000, 1, 8, 0)
    assert raw[38:42] == b"fact" and struct.unpack_from("<II", raw, 42) == (4, 1234)
    assert raw[50:54] == b"data" and struct.unpack_from("<I", raw, 54)[0] == 1234


def test_pcm16_stereo_round_trip_and_stdlib_wave_agrees(tmp_path):
    frames = np.stack([tone_pcm(800, 300), tone_pcm(800, 700)], axis=1).astype("<i2")
    with WavWriter(tmp_path / "s.wav", encoding="pcm16", channels=2) as writer:
        writer.write_at(0, frames.tobytes())
    samples, info = read_int16(tmp_path / "s.wav")
    assert (info.subtype, info.samplerate, info.channels, info.frames) == ("PCM_16", 8000, 2, 800)
    assert np.array_equal(samples, frames)
    with wave.open(str(tmp_path / "s.wav"), "rb") as reader:  # an independent parser
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (2, 2, 8000)
        assert reader.readframes(10_000) == frames.tobytes()


def test_later_write_at_earlier_time_lands_in_place_and_gaps_are_silence(tmp_path):
    late, early = tone_ulaw(160, 500), tone_ulaw(80, 900)
    with WavWriter(tmp_path / "a.wav", encoding="ulaw", channels=1) as writer:
        writer.write_at(400, late)  # 0..400 is a gap
        assert writer.num_frames == 560
        writer.write_at(100, early)  # earlier, inside the gap
        assert writer.num_frames == 560
    raw = (tmp_path / "a.wav").read_bytes()[58:]
    expected = bytearray(b"\xff" * 560)
    expected[400:560] = late
    expected[100:180] = early
    assert raw == bytes(expected)
    samples, _ = read_int16(tmp_path / "a.wav")
    assert np.array_equal(samples[:, 0], ulaw_to_array(bytes(expected)))
    assert not samples[:100].any() and not samples[180:400].any()


def test_pcm16_gap_is_zero(tmp_path):
    with WavWriter(tmp_path / "s.wav", encoding="pcm16", channels=2) as writer:
        writer.write_at(300, np.full((10, 2), 1000, dtype="<i2").tobytes())
    samples, info = read_int16(tmp_path / "s.wav")
    assert info.frames == 310
    assert not samples[:300].any() and (samples[300:] == 1000).all()


def test_write_channel_at_keeps_the_other_channel(tmp_path):
    left, right = tone_pcm(1000, 440), tone_pcm(600, 1000, 5000)
    with WavWriter(tmp_path / "s.wav", encoding="pcm16", channels=2) as writer:
        writer.write_channel_at(0, 0, left[:700].tobytes())  # left: 0..700
        writer.write_channel_at(500, 1, right.tobytes())  # right: 500..1100, past the end
        writer.write_channel_at(700, 0, left[700:].tobytes())  # left continues under the right
        writer.write_channel_at(2000, 1, right[:50].tobytes())  # far past the end: a gap
    samples, info = read_int16(tmp_path / "s.wav")
    assert info.frames == 2050
    assert np.array_equal(samples[:1000, 0], left) and not samples[1000:, 0].any()
    assert not samples[:500, 1].any()
    assert np.array_equal(samples[500:1100, 1], right)
    assert not samples[1100:2000, 1].any()
    assert np.array_equal(samples[2000:, 1], right[:50])


def test_header_is_valid_after_every_flush_including_odd_sizes(tmp_path):
    path = tmp_path / "a.wav"
    written = bytearray()
    with WavWriter(path, encoding="ulaw", channels=1) as writer:
        assert sf.info(path).frames == 0  # valid from creation
        for size in (161, 160, 1, 0, 1000, 3):
            chunk = tone_ulaw(size, 200 + size)
            writer.write_at(len(written), chunk)
            written += chunk
            writer.flush()
            samples, info = read_int16(path)
            assert (info.subtype, info.frames) == ("ULAW", len(written))
            assert np.array_equal(samples[:, 0], ulaw_to_array(bytes(written)))
            # an odd data chunk is followed by its pad byte (RIFF), which the next write replaces
            assert os.path.getsize(path) == 58 + len(written) + (len(written) & 1)
    assert read_info(path).num_frames == len(written)


def test_flushed_data_reaches_the_os_before_close(tmp_path):
    path = tmp_path / "a.wav"
    writer = WavWriter(path, encoding="ulaw", channels=1)
    writer.write_at(0, tone_ulaw(100))
    writer.flush()
    with open(path, "rb") as other:  # a second handle sees the flushed file
        assert len(other.read()) == 58 + 100
    writer.close()
    writer.close()  # idempotent
    assert writer.closed


def test_repair_header_counts_unflushed_data_and_cuts_partial_frames(tmp_path):
    path = tmp_path / "s.wav"
    first = np.full((100, 2), 7, dtype="<i2").tobytes()
    with WavWriter(path, encoding="pcm16", channels=2) as writer:
        writer.write_at(0, first)
    later = np.full((50, 2), -9, dtype="<i2").tobytes()
    with open(path, "ab") as file:  # data that reached the file after the last header update
        file.write(later + b"\x01\x02\x03")  # and a partial frame
    assert sf.info(path).frames == 100  # the stale header
    assert repair_header(path) == 150
    samples, info = read_int16(path)
    assert (info.subtype, info.frames) == ("PCM_16", 150)
    assert (samples[:100] == 7).all() and (samples[100:] == -9).all()
    assert os.path.getsize(path) == 44 + 150 * 4


def test_repair_header_treats_the_pad_byte_as_padding(tmp_path):
    path = tmp_path / "a.wav"
    with WavWriter(path, encoding="ulaw", channels=1) as writer:
        writer.write_at(0, tone_ulaw(161))
    assert os.path.getsize(path) == 58 + 162
    assert repair_header(path) == 161
    assert sf.info(path).frames == 161
    with open(path, "r+b") as file:  # as WavWriter extends the file: over the pad byte
        file.seek(58 + 161)
        file.write(b"\x80\x81")
    assert repair_header(path) == 163
    assert os.path.getsize(path) == 58 + 164  # a new pad byte
    samples, _ = read_int16(path)
    assert np.array_equal(samples[161:, 0], ulaw_to_array(b"\x80\x81"))


CRASH_SCRIPT = """
import os, signal, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, {repo!r})
from audio.wavfile import WavWriter
writer = WavWriter(Path({path!r}), encoding="ulaw", channels=1)
data = (np.arange(24000) % 256 ^ 0x55).astype(np.uint8).tobytes()
writer.write_at(0, data[:8000])
writer.write_at(16000, data[16000:])  # a gap, then an earlier write into it
writer.write_at(8000, data[8000:16000])
writer.flush()
writer.write_at(24000, data[:5001])  # not flushed
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_crash_after_flush_keeps_everything_up_to_the_flush(tmp_path):
    path = tmp_path / "crash.wav"
    child = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT.format(repo=str(REPO), path=str(path))], capture_output=True, timeout=60
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    data = (np.arange(24000) % 256 ^ 0x55).astype(np.uint8).tobytes()
    assert sf.info(path).frames == 24000  # readable as left: the header of the last flush
    num_frames = repair_header(path)
    assert num_frames >= 24000
    samples, info = read_int16(path)
    assert (info.subtype, info.frames) == ("ULAW", num_frames)
    expected = data + data[:5001]
    assert np.array_equal(samples[:, 0], ulaw_to_array(expected[:num_frames]))


def test_errors(tmp_path):
    with pytest.raises(AudioFormatError):
        WavWriter(tmp_path / "x.wav", encoding="alaw", channels=1)
    with WavWriter(tmp_path / "u.wav", encoding="ulaw", channels=1) as ulaw_writer:
        with pytest.raises(AudioFormatError):
            ulaw_writer.write_channel_at(0, 0, b"\x00\x00")
        with pytest.raises(ValueError):
            ulaw_writer.write_at(-1, b"\xff")
    with WavWriter(tmp_path / "s.wav", encoding="pcm16", channels=2) as writer:
        with pytest.raises(AudioFormatError):
            writer.write_at(0, b"\x00\x00")  # half a stereo frame
        with pytest.raises(AudioFormatError):
            writer.write_channel_at(0, 0, b"\x00")
        with pytest.raises(ValueError):
            writer.write_channel_at(0, 2, b"\x00\x00")
        assert writer.num_frames == 0
    (tmp_path / "junk.wav").write_bytes(b"not a wav file at all" * 10)
    with pytest.raises(AudioFormatError):
        repair_header(tmp_path / "junk.wav")
