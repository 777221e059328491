"""audio/waveform.py: the SVG's structure, the turns' positions, the envelope, escaping, cost."""

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from audio.errors import AudioFormatError
from audio.waveform import AXIS_HEIGHT_PX, GUTTER_PX, format_clock, waveform_svg

SVG = "{http://www.w3.org/2000/svg}"
RATE = 8000


def tone(duration_s, freq_hz=440.0, amplitude=12000):
    t = np.arange(int(duration_s * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


def stereo(left, right):
    return np.column_stack([left, right]).astype(np.int16)


def envelope_points(root, lane):
    """The (x, y) points of one lane's envelope path."""
    path = root.findall(f"{SVG}path[@class='envelope']")[lane]
    return np.array([[float(v) for v in pair.split(",")] for pair in re.findall(r"[-\d.]+,[-\d.]+", path.get("d"))])


def test_structure_lanes_and_time_axis():
    audio = stereo(tone(5.0), np.zeros(5 * RATE, np.int16))
    svg = waveform_svg(audio, RATE, [], width_px=800, lane_height_px=60, labels=("caller", "bot"))
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert (root.get("width"), root.get("height")) == ("800", str(2 * 60 + AXIS_HEIGHT_PX))
    lanes = root.findall(f"{SVG}rect[@class='lane']")
    assert [(float(r.get("y")), float(r.get("height"))) for r in lanes] == [(0, 60), (60, 60)]
    assert [t.text for t in root.findall(f"{SVG}text[@class='lane-label']")] == ["caller", "bot"]
    assert len(root.findall(f"{SVG}path[@class='envelope']")) == 2
    # Ticks: whole seconds 0..5 at their x positions on a 5 s axis.
    ticks = root.findall(f"{SVG}g[@class='time-axis']/{SVG}text[@class='tick-label']")
    seconds = [float(t.get("data-seconds")) for t in ticks]
    assert seconds[0] == 0 and seconds[-1] == 5.0 and len(seconds) >= 3
    plot_px = 800 - GUTTER_PX
    for label in ticks:
        s = float(label.get("data-seconds"))
        assert float(label.get("x")) == pytest.approx(GUTTER_PX + s / 5.0 * plot_px, abs=0.01)
        assert label.text == f"{s:g} s"


def test_turn_rectangles_sit_on_their_lane_at_their_times():
    audio = stereo(tone(10.0), tone(10.0, 300))
    turns = [
        {"speaker": "caller", "text": "one two three", "start_ms": 1000, "end_ms": 2500},
        {"speaker": "bot", "text": "You said: one two three.", "start_ms": 3200, "end_ms": 6000},
        {"speaker": "callee", "text": "hello?", "start_ms": 7000, "end_ms": 9750},
        {"speaker": "system", "text": "not drawn", "start_ms": 0, "end_ms": 100},
    ]
    root = ET.fromstring(waveform_svg(audio, RATE, turns, width_px=1064, lane_height_px=80))
    rects = root.findall(f"{SVG}rect")
    rects = [r for r in rects if "turn" in r.get("class").split()]
    assert [r.get("class") for r in rects] == ["turn turn-caller", "turn turn-bot", "turn turn-callee"]
    px_per_ms = (1064 - GUTTER_PX) / 10_000
    for rect, turn, lane in zip(rects, turns, (0, 1, 1)):
        assert float(rect.get("x")) == pytest.approx(GUTTER_PX + turn["start_ms"] * px_per_ms, abs=0.01)
        assert float(rect.get("width")) == pytest.approx((turn["end_ms"] - turn["start_ms"]) * px_per_ms, abs=0.01)
        assert float(rect.get("y")) == lane * 80 and float(rect.get("height")) == 80
        assert turn["text"] in rect.find(f"{SVG}title").text
        assert 0 < float(rect.get("fill-opacity")) < 1
    assert rects[0].find(f"{SVG}title").text == "caller 0:01.0–0:02.5: one two three"


def test_turns_past_the_audio_extend_the_axis_and_open_turns_stay_visible():
    audio = stereo(tone(2.0), tone(2.0))
    turns = [{"speaker": "caller", "text": "late", "start_ms": 3000, "end_ms": 4000},
             {"speaker": "bot", "text": "still speaking", "start_ms": 1000, "end_ms": None}]
    root = ET.fromstring(waveform_svg(audio, RATE, turns, width_px=464))
    late, open_turn = [r for r in root.findall(f"{SVG}rect") if "turn" in r.get("class")]
    assert float(late.get("x")) + float(late.get("width")) == pytest.approx(464, abs=0.01)  # axis spans 4 s
    assert float(open_turn.get("width")) >= 2
    # The 2 s of audio fill half the plot.
    xs = envelope_points(root, 0)[:, 0]
    assert xs.max() == pytest.approx(GUTTER_PX + 200, abs=0.1)


def test_envelope_follows_the_audio():
    # Left: silence, a loud 1 s tone from 1 s to 2 s, silence to 4 s. Right: silence.
    left = np.concatenate([np.zeros(RATE, np.int16), tone(1.0, amplitude=30000), np.zeros(2 * RATE, np.int16)])
    audio = stereo(left, np.zeros_like(left))
    lane_height_px = 100
    root = ET.fromstring(waveform_svg(audio, RATE, [], width_px=GUTTER_PX + 400, lane_height_px=lane_height_px))
    points = envelope_points(root, 0)
    assert len(points) <= 4 * 400  # at most one column per pixel
    x_s = (points[:, 0] - GUTTER_PX) / 100  # 100 px per second
    centre = lane_height_px / 2
    loud = points[(x_s > 1.05) & (x_s < 1.95)]
    quiet = points[(x_s < 0.95) | (x_s > 2.05)]
    half = lane_height_px / 2 - 4
    assert np.abs(loud[:, 1] - centre).max() == pytest.approx(half * 30000 / 32768, abs=0.2)
    assert np.abs(loud[:, 1] - centre).min() > 0.8 * half  # every loud column reaches near the peak
    assert np.abs(quiet[:, 1] - centre).max() < 0.1
    top_edge = points[: len(points) // 2]  # maxima left to right, then minima back (SVG y grows down)
    assert (top_edge[:, 1] <= centre + 1e-9).all() and (points[len(points) // 2 :, 1] >= centre - 1e-9).all()
    right = envelope_points(root, 1)
    assert np.abs(right[:, 1] - (lane_height_px + centre)).max() < 0.1


def test_envelope_with_a_length_that_does_not_divide_evenly():
    audio = stereo(tone(1.2345, amplitude=20000), tone(1.2345, amplitude=20000))
    root = ET.fromstring(waveform_svg(audio, RATE, [], width_px=GUTTER_PX + 333))
    xs = envelope_points(root, 1)[:, 0]
    assert xs.min() == pytest.approx(GUTTER_PX) and xs.max() == pytest.approx(GUTTER_PX + 333, abs=0.1)


def test_text_is_escaped():
    nasty = '<script>alert("x")</script> & \'quotes\' ]]>'
    turns = [{"speaker": "caller", "text": nasty, "start_ms": 0, "end_ms": 500},
             {"speaker": "bot", "text": "", "dtmf": "<1&2>", "start_ms": 600, "end_ms": 600}]
    svg = waveform_svg(stereo(tone(1.0), tone(1.0)), RATE, turns, labels=("<caller>", "bot & co"))
    assert "<script>" not in svg and "<1&2>" not in svg
    root = ET.fromstring(svg)
    titles = [r.find(f"{SVG}title").text for r in root.findall(f"{SVG}rect") if "turn" in r.get("class")]
    assert titles[0].endswith(nasty)
    assert titles[1].endswith("[keys <1&2>]")
    assert [t.text for t in root.findall(f"{SVG}text[@class='lane-label']")] == ["<caller>", "bot & co"]


def test_empty_audio():
    empty = np.zeros((0, 2), np.int16)
    root = ET.fromstring(waveform_svg(empty, RATE, []))
    assert root.findall(f"{SVG}path") == []
    assert len(root.findall(f"{SVG}line[@class='centre']")) == 2
    seconds = [float(t.get("data-seconds")) for t in root.iter(f"{SVG}text") if t.get("class") == "tick-label"]
    assert seconds[0] == 0 and seconds[-1] == 1.0  # a 1 s axis when there is nothing to span
    # With turns, they alone set the axis.
    root = ET.fromstring(waveform_svg(empty, RATE, [{"speaker": "bot", "text": "hi", "start_ms": 500, "end_ms": 2000}],
                                      width_px=GUTTER_PX + 200))
    (rect,) = [r for r in root.findall(f"{SVG}rect") if "turn" in r.get("class")]
    assert float(rect.get("x")) == pytest.approx(GUTTER_PX + 50) and float(rect.get("width")) == pytest.approx(150)


@pytest.mark.parametrize("bad", [np.zeros(100, np.int16), np.zeros((100, 1), np.int16),
                                 np.zeros((100, 2), np.float32), np.zeros((100, 3), np.int16)])
def test_rejects_anything_but_int16_stereo(bad):
    with pytest.raises(AudioFormatError):
        waveform_svg(bad, RATE, [])


def test_rejects_bad_dimensions():
    with pytest.raises(AudioFormatError):
        waveform_svg(np.zeros((10, 2), np.int16), 0, [])
    with pytest.raises(AudioFormatError):
        waveform_svg(np.zeros((10, 2), np.int16), RATE, [], width_px=GUTTER_PX)


def test_a_ten_minute_call_gives_a_picture_bounded_by_its_width():
    # Its cost (158 ms for 10 minutes on the benchmark machine) is measured by bench/waveform_cost.py.
    rng = np.random.default_rng(1)
    audio = (rng.standard_normal((600 * RATE, 2)) * 4000).astype(np.int16)
    turns = [{"speaker": "caller" if i % 2 else "bot", "text": f"turn {i}", "start_ms": i * 5000, "end_ms": i * 5000 + 4000}
             for i in range(120)]
    svg = waveform_svg(audio, RATE, turns)
    assert len(svg) < 400_000  # bounded by the width, not by the call's length
    assert len(ET.fromstring(svg).findall(".//{http://www.w3.org/2000/svg}rect")) >= 120  # every turn is marked


def test_format_clock():
    assert format_clock(0) == "0:00.0"
    assert format_clock(4120) == "0:04.1"
    assert format_clock(59_960) == "1:00.0"
    assert format_clock(720_000) == "12:00.0"
    assert format_clock(None) == "—"
