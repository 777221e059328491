"""Tests for tools/twilio_sim/frames.py (pure)."""

import pytest

from tools.twilio_sim.frames import frame_index_for_ms, split_frames


def test_split_frames_pads_last_frame_with_ulaw_silence():
    ulaw = bytes(range(200)) * 2  # 400 bytes
    frames = split_frames(ulaw)
    assert [len(frame) for frame in frames] == [160, 160, 160]
    assert b"".join(frames)[:400] == ulaw
    assert frames[-1][80:] == b"\xff" * 80


@pytest.mark.parametrize("end_ms, expected", [(20, 0), (21, 0), (40, 0), (41, 1), (60, 1), (61, 2), (0, 0)])
def test_frame_index_for_ms_picks_the_frame_holding_the_end(end_ms, expected):
    assert frame_index_for_ms(end_ms, first_timestamp_ms=20) == expected
