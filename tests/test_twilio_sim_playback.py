"""Tests for tools/twilio_sim/playback.py (pure)."""

import random

import pytest

from tools.twilio_sim.frames import FRAME_BYTES
from tools.twilio_sim.playback import PlaybackBuffer


def test_playback_buffer_empty_tick_plays_nothing():
    buffer = PlaybackBuffer()
    assert buffer.tick() == (b"", [])
    assert buffer.queued_bytes == 0


def test_playback_buffer_plays_in_order_and_reaches_mark_after_audio():
    buffer = PlaybackBuffer()
    audio = bytes(random.Random(1).randrange(256) for _ in range(400))
    buffer.enqueue_media(audio[:250])
    buffer.enqueue_media(audio[250:])
    assert buffer.enqueue_mark("end") is False
    assert buffer.queued_bytes == 400 and buffer.pending_marks == ["end"]
    first, second, third = buffer.tick(), buffer.tick(), buffer.tick()
    assert (first[1], second[1], third[1]) == ([], [], ["end"])
    assert first[0] + second[0] + third[0] == audio
    assert [len(first[0]), len(second[0]), len(third[0])] == [160, 160, 80]
    assert buffer.queued_bytes == 0 and buffer.tick() == (b"", [])


def test_playback_buffer_mark_on_tick_boundary_is_reached_with_that_tick():
    buffer = PlaybackBuffer()
    buffer.enqueue_media(b"\x01" * 160)
    buffer.enqueue_mark("m")
    assert buffer.tick() == (b"\x01" * 160, ["m"])


def test_playback_buffer_mark_with_nothing_queued_is_reached_at_once():
    buffer = PlaybackBuffer()
    assert buffer.enqueue_mark("now") is True
    assert buffer.pending_marks == []
    assert buffer.tick() == (b"", [])


def test_playback_buffer_tick_crosses_chunks_and_marks():
    buffer = PlaybackBuffer()
    buffer.enqueue_media(b"a" * 100)
    buffer.enqueue_mark("between")
    buffer.enqueue_media(b"b" * 100)
    assert buffer.tick() == (b"a" * 100 + b"b" * 60, ["between"])
    assert buffer.queued_bytes == 40


def test_playback_buffer_clear_drops_audio_and_returns_marks():
    buffer = PlaybackBuffer()
    buffer.enqueue_media(b"x" * 500)
    buffer.enqueue_mark("one")
    buffer.enqueue_media(b"y" * 500)
    buffer.enqueue_mark("two")
    buffer.tick()
    assert buffer.clear() == ["one", "two"]
    assert buffer.queued_bytes == 0 and buffer.pending_marks == []
    assert buffer.tick() == (b"", [])
    assert buffer.enqueue_mark("after") is True


@pytest.mark.parametrize("seed", range(5))
def test_playback_buffer_random_schedule_is_exact(seed):
    rng = random.Random(seed)
    buffer = PlaybackBuffer()
    sent = bytearray()
    mark_positions = {}  # name -> byte offset at which it was queued
    for index in range(40):
        chunk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 700)))
        buffer.enqueue_media(chunk)
        sent += chunk
        if rng.random() < 0.4:
            name = f"m{index}"
            assert buffer.enqueue_mark(name) is False
            mark_positions[name] = len(sent)
    played = bytearray()
    reached_at = {}
    while buffer.queued_bytes or buffer.pending_marks:
        audio, marks = buffer.tick(FRAME_BYTES)
        played += audio
        for name in marks:
            reached_at[name] = len(played)
    assert played == sent
    # Each mark is reached on the tick that plays the last byte before it.
    for name, position in mark_positions.items():
        assert reached_at[name] >= position
        assert reached_at[name] - position < FRAME_BYTES
