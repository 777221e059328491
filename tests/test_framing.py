"""Tests for audio.framing: Twilio media chunks → fixed VAD frames on the media clock."""

import numpy as np
import pytest

from audio.codec import ulaw_to_pcm16
from audio.errors import AudioFormatError
from audio.framing import Frame, FrameAssembler

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
