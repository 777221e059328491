"""Tests for audio.framing: Twilio media chunks → fixed VAD frames on the media clock."""

import numpy as np
import pytest
import soxr

from audio.codec import ulaw_to_pcm16
from audio.errors import AudioFormatError
from audio.framing import RESAMPLE_QUALITY, Frame, FrameAssembler
from audio.stream_format import L16, MULAW_8K, StreamFormat
from tests.phone import CORPUS, read_mono

FIRST_TIMESTAMP_MS = 52  # Twilio's first inbound timestamp in the 2020 capture (protocol.md §7)


def random_ulaw(num_bytes: int, seed: int = 0) -> bytes:
    # Codes 0x00..0x7E decode to distinct non-zero negative samples, never to silence.
    return np.random.default_rng(seed).integers(0, 0x7F, size=num_bytes, dtype=np.uint8).tobytes()


def push_all(assembler: FrameAssembler, chunks: list[tuple[bytes, int]]) -> list[Frame]:
    frames = []
    for ulaw, timestamp_ms in chunks:
        frames.extend(assembler.push(ulaw, timestamp_ms))
    return frames


def contiguous_chunks(ulaw: bytes, chunk_bytes: int, first_ms: int) -> list[tuple[bytes, int]]:
    """Split 8 kHz μ-law into chunks stamped like Twilio (whole ms, 8 bytes per ms)."""
    return [(ulaw[i : i + chunk_bytes], first_ms + i // 8) for i in range(0, len(ulaw), chunk_bytes)]


def test_twilio_sized_chunks_map_one_to_one():
    ulaw = random_ulaw(160 * 50)
    assembler = FrameAssembler()
    assert assembler.expected_timestamp_ms is None
    frames = push_all(assembler, contiguous_chunks(ulaw, 160, FIRST_TIMESTAMP_MS))
    assert [f.timestamp_ms for f in frames] == [FIRST_TIMESTAMP_MS + 20 * k for k in range(50)]
    assert b"".join(f.pcm for f in frames) == ulaw_to_pcm16(ulaw)
    assert all(len(f.pcm) == 320 and not f.filled for f in frames)
    assert assembler.expected_timestamp_ms == FIRST_TIMESTAMP_MS + 1000
    assert (assembler.filled_frames, assembler.clock_jumps, assembler.overlaps) == (0, 0, 0)


@pytest.mark.parametrize("chunk_bytes", [1, 7, 100, 160, 333, 800, 4000])
@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_any_chunk_size_gives_the_same_frames(chunk_bytes, frame_ms):
    ulaw = random_ulaw(8000, seed=chunk_bytes)
    assembler = FrameAssembler(frame_ms=frame_ms)
    frames = push_all(assembler, contiguous_chunks(ulaw, chunk_bytes, FIRST_TIMESTAMP_MS))
    frame_bytes = 16 * frame_ms
    count = 16000 // frame_bytes
    assert len(frames) == count
    assert b"".join(f.pcm for f in frames) == ulaw_to_pcm16(ulaw)[: count * frame_bytes]
    assert [f.timestamp_ms for f in frames] == [FIRST_TIMESTAMP_MS + frame_ms * k for k in range(count)]
    assert (assembler.filled_frames, assembler.clock_jumps, assembler.overlaps) == (0, 0, 0)
    assert assembler.expected_timestamp_ms == FIRST_TIMESTAMP_MS + 1000


def test_gap_of_whole_frames_is_filled_with_silence():
    ulaw = random_ulaw(160 * 10)
    chunks = contiguous_chunks(ulaw, 160, FIRST_TIMESTAMP_MS)
    del chunks[4:7]  # Twilio skipped 60 ms
    assembler = FrameAssembler()
    frames = push_all(assembler, chunks)
    assert [f.timestamp_ms for f in frames] == [FIRST_TIMESTAMP_MS + 20 * k for k in range(10)]
    assert [f.filled for f in frames] == [False] * 4 + [True] * 3 + [False] * 3
    pcm = ulaw_to_pcm16(ulaw)
    assert [f.pcm for f in frames[4:7]] == [bytes(320)] * 3
    assert b"".join(f.pcm for f in frames[7:]) == pcm[7 * 320 :]
    assert assembler.filled_frames == 3 and assembler.clock_jumps == 0 and assembler.overlaps == 0


def test_gap_with_odd_chunks_keeps_audio_on_the_media_clock():
    # 100-byte chunks (12.5 ms), then a 30 ms gap: frames mix audio and silence.
    first = random_ulaw(300, seed=1)
    second = random_ulaw(500, seed=2)
    assembler = FrameAssembler()
    frames = push_all(assembler, contiguous_chunks(first, 100, 1000))
    frames += push_all(assembler, contiguous_chunks(second, 100, 1068))
    # The first part ends at 1037.5 ms and the second starts at 1068 ms exactly:
    # 30.5 ms (244 samples) of silence go between them.
    expected = ulaw_to_pcm16(first) + bytes(2 * (1068 * 8 - (1000 * 8 + 300))) + ulaw_to_pcm16(second)
    assert b"".join(f.pcm for f in frames) == expected[: len(frames) * 320]
    assert [f.timestamp_ms for f in frames] == [1000 + 20 * k for k in range(len(frames))]
    # Frame 1020..1040 holds audio then silence; 1040..1060 is silence only; 1060..1080 mixes.
    assert [f.filled for f in frames] == [False, False, True, False, False, False][: len(frames)]
    assert assembler.filled_frames == 1
    assert assembler.expected_timestamp_ms == 1068 + 500 // 8


@pytest.mark.parametrize(("gap_ms", "filled"), [(9, False), (10, True), (19, True)])
def test_gap_of_half_a_frame_or_more_is_filled(gap_ms, filled):
    ulaw = random_ulaw(320)
    assembler = FrameAssembler()
    frames = assembler.push(ulaw[:160], 0) + assembler.push(ulaw[160:], 20 + gap_ms)
    pcm = b"".join(f.pcm for f in frames)
    if filled:
        assert pcm == (ulaw_to_pcm16(ulaw[:160]) + bytes(16 * gap_ms) + ulaw_to_pcm16(ulaw[160:]))[: len(pcm)]
        assert assembler.expected_timestamp_ms == 40 + gap_ms
    else:  # jitter: the audio goes on at the clock's position
        assert pcm == ulaw_to_pcm16(ulaw)
        assert assembler.expected_timestamp_ms == 40
    assert assembler.filled_frames == 0  # no frame is silence only


def test_gap_up_to_the_limit_is_filled_and_a_longer_jump_resyncs():
    ulaw = random_ulaw(160 * 3)
    assembler = FrameAssembler(max_gap_fill_ms=2000)
    frames = assembler.push(ulaw[:160], 52) + assembler.push(ulaw[160:320], 72 + 2000)
    assert len(frames) == 102 and sum(f.filled for f in frames) == 100
    assert frames[-1].timestamp_ms == 2072 and frames[-1].pcm == ulaw_to_pcm16(ulaw[160:320])
    assert assembler.clock_jumps == 0
    frames = assembler.push(ulaw[320:], 2092 + 2001)
    assert [(f.timestamp_ms, f.filled) for f in frames] == [(4093, False)]
    assert frames[0].pcm == ulaw_to_pcm16(ulaw[320:])
    assert assembler.clock_jumps == 1 and assembler.filled_frames == 100
    assert assembler.expected_timestamp_ms == 4113


def test_jump_pads_and_emits_the_pending_partial_frame():
    ulaw = random_ulaw(100 + 160, seed=3)
    assembler = FrameAssembler()
    assert assembler.push(ulaw[:100], 52) == []  # 12.5 ms: less than a frame
    frames = assembler.push(ulaw[100:], 60_000)
    assert [(f.timestamp_ms, f.filled) for f in frames] == [(52, False), (60_000, False)]
    assert frames[0].pcm == ulaw_to_pcm16(ulaw[:100]) + bytes(120)
    assert frames[1].pcm == ulaw_to_pcm16(ulaw[100:])
    assert assembler.clock_jumps == 1 and assembler.filled_frames == 0


def test_backwards_timestamps_are_accepted_and_the_clock_keeps_advancing():
    ulaw = random_ulaw(160 * 6, seed=4)
    chunks = contiguous_chunks(ulaw, 160, FIRST_TIMESTAMP_MS)
    assembler = FrameAssembler()
    frames = push_all(assembler, chunks[:3])
    frames += assembler.push(chunks[2][0], chunks[2][1])  # duplicate of the third chunk
    frames += assembler.push(chunks[3][0], chunks[3][1] - 5)  # overlaps by 5 ms
    frames += push_all(assembler, chunks[4:])
    assert assembler.overlaps == 2
    assert assembler.filled_frames == 0 and assembler.clock_jumps == 0
    assert [f.timestamp_ms for f in frames] == [FIRST_TIMESTAMP_MS + 20 * k for k in range(7)]
    assert frames[3].pcm == frames[2].pcm  # the duplicate's audio was kept, after the original
    assert b"".join(f.pcm for f in frames) == ulaw_to_pcm16(ulaw[:480] + chunks[2][0] + ulaw[480:])
    assert assembler.expected_timestamp_ms == FIRST_TIMESTAMP_MS + 140


def test_first_timestamp_sets_the_clock():
    assembler = FrameAssembler()
    frames = assembler.push(random_ulaw(160), 123_456)
    assert frames[0].timestamp_ms == 123_456 and assembler.expected_timestamp_ms == 123_476
    assert (assembler.filled_frames, assembler.clock_jumps, assembler.overlaps) == (0, 0, 0)


def test_empty_chunk_is_ignored():
    assembler = FrameAssembler()
    assert assembler.push(b"", 52) == [] and assembler.expected_timestamp_ms is None
    assembler.push(random_ulaw(160), 52)
    assert assembler.push(b"", 9999) == [] and assembler.expected_timestamp_ms == 72


def test_frame_is_immutable_bytes():
    frame = FrameAssembler().push(bytearray(random_ulaw(160)), 0)[0]
    assert type(frame.pcm) is bytes
    with pytest.raises(AttributeError):
        frame.timestamp_ms = 5


def test_timestamp_must_be_an_int():
    with pytest.raises(TypeError):
        FrameAssembler().push(random_ulaw(160), "52")  # Twilio sends strings: convert first


@pytest.mark.parametrize(
    "kwargs", [dict(frame_ms=25), dict(sample_rate=44100), dict(sample_rate=11025), dict(max_gap_fill_ms=-1)]
)
def test_invalid_parameters_raise(kwargs):
    with pytest.raises(ValueError):
        FrameAssembler(**kwargs)
    assert issubclass(AudioFormatError, ValueError)


def test_16khz_frames():
    ulaw = random_ulaw(16000 // 50 * 3)  # three 20 ms chunks at 16 kHz
    assembler = FrameAssembler(sample_rate=16000)
    frames = push_all(assembler, [(ulaw[i : i + 320], 10 + 20 * (i // 320)) for i in range(0, len(ulaw), 320)])
    assert [len(f.pcm) for f in frames] == [640] * 3 and [f.timestamp_ms for f in frames] == [10, 30, 50]


# --- SignalWire L16 streams (protocol.md §9): PCM16 LE at 8, 16 or 24 kHz ----------------------------


def l16_speech(rate: int) -> bytes:
    """jfk.flac (real speech, 11 s) as L16 at ``rate``: PCM16 LE mono."""
    return StreamFormat(L16, rate).encode(*_jfk())


def _jfk() -> tuple[np.ndarray, int]:
    if not hasattr(_jfk, "cached"):
        _jfk.cached = read_mono(CORPUS / "jfk.flac")
    return _jfk.cached


def l16_chunks(wire: bytes, fmt: StreamFormat, chunk_bytes: int, first_ms: int) -> list[tuple[bytes, int]]:
    """Split L16 into chunks stamped in whole ms like the media messages."""
    return [(wire[i : i + chunk_bytes], first_ms + i // fmt.bytes_per_ms) for i in range(0, len(wire), chunk_bytes)]


def samples_of(frames: list[Frame]) -> np.ndarray:
    return np.frombuffer(b"".join(f.pcm for f in frames), dtype="<i2")


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("chunk_ms", [20, 7.5, 100])
def test_l16_at_vad_rates_is_cut_without_change(rate, chunk_ms):
    fmt = StreamFormat(L16, rate)
    wire = l16_speech(rate)[: 3 * fmt.bytes_per_ms * 1000]  # 3 s
    assembler = FrameAssembler(frame_ms=20, stream_format=fmt)
    assert assembler.sample_rate == rate and assembler.frame_bytes == 40 * rate // 1000
    frames = push_all(assembler, l16_chunks(wire, fmt, int(chunk_ms * fmt.bytes_per_ms), FIRST_TIMESTAMP_MS))
    assert len(frames) == 150 and all(len(f.pcm) == assembler.frame_bytes and not f.filled for f in frames)
    assert [f.timestamp_ms for f in frames] == [FIRST_TIMESTAMP_MS + 20 * k for k in range(150)]
    assert b"".join(f.pcm for f in frames) == wire  # L16 is already PCM16 LE
    assert assembler.expected_timestamp_ms == FIRST_TIMESTAMP_MS + 3000
    assert assembler.finish() == []


def test_l16_gap_is_filled_like_mulaw():
    fmt = StreamFormat(L16, 16000)
    wire = l16_speech(16000)[: 640 * 10]
    chunks = l16_chunks(wire, fmt, 640, FIRST_TIMESTAMP_MS)
    del chunks[4:7]  # 60 ms skipped
    assembler = FrameAssembler(stream_format=fmt)
    frames = push_all(assembler, chunks)
    assert [f.timestamp_ms for f in frames] == [FIRST_TIMESTAMP_MS + 20 * k for k in range(10)]
    assert [f.filled for f in frames] == [False] * 4 + [True] * 3 + [False] * 3
    assert [f.pcm for f in frames[4:7]] == [bytes(640)] * 3
    assert b"".join(f.pcm for f in frames[7:]) == wire[7 * 640 :]
    frames = assembler.push(wire[:640], FIRST_TIMESTAMP_MS + 200 + 5000)  # a jump: resync
    assert [(f.timestamp_ms, f.filled) for f in frames] == [(FIRST_TIMESTAMP_MS + 5200, False)]
    assert (assembler.filled_frames, assembler.clock_jumps) == (3, 1)


def test_odd_l16_chunk_raises_and_changes_nothing():
    fmt = StreamFormat(L16, 16000)
    wire = l16_speech(16000)[:1280]
    assembler = FrameAssembler(stream_format=fmt)
    assembler.push(wire[:640], 0)
    with pytest.raises(AudioFormatError):
        assembler.push(wire[640:1279], 20)
    assert assembler.expected_timestamp_ms == 20
    assert [f.pcm for f in assembler.push(wire[640:], 20)] == [wire[640:]]


def test_stream_format_and_sample_rate_must_agree():
    assert FrameAssembler(sample_rate=16000, stream_format=StreamFormat(L16, 24000)).sample_rate == 16000
    assert FrameAssembler(stream_format=MULAW_8K).sample_rate == 8000
    assert FrameAssembler().stream_format is MULAW_8K
    with pytest.raises(AudioFormatError):
        FrameAssembler(sample_rate=24000, stream_format=StreamFormat(L16, 24000))


def test_mulaw_finish_pads_the_partial_frame():
    ulaw = random_ulaw(160 + 100)
    assembler = FrameAssembler(stream_format=MULAW_8K)
    assert len(assembler.push(ulaw, 52)) == 1
    frames = assembler.finish()
    assert [(f.timestamp_ms, f.filled) for f in frames] == [(72, False)]
    assert frames[0].pcm == ulaw_to_pcm16(ulaw[160:]) + bytes(120)
    assert assembler.finish() == [] and assembler.expected_timestamp_ms is None


def lq_reference(wire: bytes) -> np.ndarray:
    """One-shot soxr of a whole 24 kHz L16 signal to 16 kHz, with the assembler's recipe."""
    samples = np.frombuffer(wire, dtype="<i2").astype(np.float32) / 32768
    out = soxr.resample(samples, 24000, 16000, RESAMPLE_QUALITY)
    return np.clip(np.rint(out * 32768), -32768, 32767)


@pytest.mark.parametrize("chunk_bytes", [960, 962, 4800, 2])
def test_24k_is_resampled_to_continuous_16k_frames(chunk_bytes):
    fmt = StreamFormat(L16, 24000)
    wire = l16_speech(24000)[: 48 * 4000]  # 4 s of speech
    assembler = FrameAssembler(frame_ms=20, stream_format=fmt)
    assert (assembler.sample_rate, assembler.frame_bytes) == (16000, 640)
    frames = push_all(assembler, l16_chunks(wire, fmt, chunk_bytes, 20041))  # SignalWire's example timestamp
    held_back = 200 - len(frames)
    assert 1 <= held_back <= 2  # the filter's delay, less than two frames
    frames += assembler.finish()
    assert len(frames) == 200 and all(len(f.pcm) == 640 and not f.filled for f in frames)
    assert [f.timestamp_ms for f in frames] == [20041 + 20 * k for k in range(200)]
    # Nothing lost, duplicated or shifted: the stream equals soxr on the whole signal.
    out = samples_of(frames).astype(np.int64)
    assert len(out) == 16000 * 4
    assert np.max(np.abs(out - lq_reference(wire))) <= 2


def test_24k_sine_stays_a_sine_over_a_long_stream():
    fmt = StreamFormat(L16, 24000)
    duration_s, frequency_hz = 60, 440.0
    t = np.arange(24000 * duration_s) / 24000
    wire = fmt.encode(0.5 * np.sin(2 * np.pi * frequency_hz * t), 24000)
    assembler = FrameAssembler(stream_format=fmt)
    frames = push_all(assembler, l16_chunks(wire, fmt, 960, 0)) + assembler.finish()
    out = samples_of(frames) / 32768
    assert len(out) == 16000 * duration_s
    ideal = 0.5 * np.sin(2 * np.pi * frequency_hz * np.arange(len(out)) / 16000)
    body = slice(1600, -1600)  # the filter's edges at the start and the end
    assert np.max(np.abs(out[body] - ideal[body])) < 1e-3


def test_24k_gap_and_jump_keep_the_grid():
    fmt = StreamFormat(L16, 24000)
    wire = l16_speech(24000)[: 960 * 20]
    chunks = l16_chunks(wire, fmt, 960, 1000)
    del chunks[5:8]  # 60 ms gap, filled
    assembler = FrameAssembler(stream_format=fmt)
    frames = push_all(assembler, chunks[:12])
    # A jump: the first segment's tail comes out before the new segment's frames.
    frames += assembler.push(chunks[12][0], 61_000)  # was at 1300 ms
    assert [f.timestamp_ms for f in frames][-1] == 1280  # all of the first segment, none of the second yet
    frames += push_all(assembler, [(c, ts + 59_700) for c, ts in chunks[13:]])
    frames += assembler.finish()
    assert all(len(f.pcm) == 640 for f in frames)
    assert [f.timestamp_ms for f in frames] == [1000 + 20 * k for k in range(12 + 3)] + [
        61_000 + 20 * k for k in range(20 - 3 - 12)
    ]
    assert [f.filled for f in frames[:15]] == [False] * 5 + [True] * 3 + [False] * 7
    assert [f.pcm for f in frames[5:8]] == [bytes(640)] * 3
    assert (assembler.filled_frames, assembler.clock_jumps) == (3, 1)
    # Each segment resampled on its own, continuously (the filled frames aside).
    first = lq_reference(wire[: 960 * 5] + bytes(960 * 3) + wire[960 * 8 : 960 * 15])
    second = lq_reference(wire[960 * 15 :])
    out = samples_of(frames).astype(np.int64)
    assert np.max(np.abs(np.delete(out[: 15 * 320], np.s_[5 * 320 : 8 * 320]) - np.delete(first, np.s_[5 * 320 : 8 * 320]))) <= 2
    assert np.max(np.abs(out[15 * 320 :] - second)) <= 2
