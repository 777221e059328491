"""Tests for audio.endpointing: the utterance detector.

Synthetic scripts use a fake classifier: frame k of a script holds the constant
sample value 2k + voiced, so the classifier reads the voiced bit and the test can
tell exactly which frames an utterance's audio contains. Real speech goes through
the whole phone chain (resample → μ-law → FrameAssembler → WebRtcVad → Endpointer).
"""

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audio.codec import ULAW_SILENCE, array_to_ulaw
from audio.endpointing import EndpointingConfig, Endpointer, SpeechPaused, SpeechStarted, Utterance, UtteranceEnded
from audio.errors import AudioFormatError
from audio.framing import FrameAssembler
from audio.resample import resample
from audio.vad import WebRtcVad

CORPUS = Path(__file__).resolve().parent / "data"
DEFAULT = EndpointingConfig()


# --- synthetic scripts ------------------------------------------------------------------------


def make_frame(index: int, voiced: bool, config: EndpointingConfig = DEFAULT) -> bytes:
    samples = config.frame_bytes // 2
    return np.full(samples, 2 * index + int(voiced), dtype="<i2").tobytes()


def fake_is_speech(frame: bytes) -> bool:
    return bool(int.from_bytes(frame[:2], "little", signed=True) & 1)


def frame_indices(pcm: bytes, config: EndpointingConfig = DEFAULT) -> list[int]:
    values = np.frombuffer(pcm, dtype="<i2").reshape(-1, config.frame_bytes // 2)[:, 0]
    return [int(v) >> 1 for v in values]


def run_script(script: str, t0: int = 0, config: EndpointingConfig = DEFAULT, finish: bool = True) -> list:
    """Push one frame per character ('#' voiced, '_' not) from media time t0; return all events."""
    endpointer = Endpointer(config, fake_is_speech)
    events = []
    for index, mark in enumerate(script):
        events += endpointer.push(make_frame(index, mark == "#", config), t0 + index * config.frame_ms)
    if finish:
        events += endpointer.finish()
    return events


def summarize(events: list, t0: int) -> list[tuple]:
    """Events as tuples of times relative to t0."""
    out = []
    for event in events:
        if isinstance(event, SpeechStarted):
            out.append(("start", event.voice_start_ms - t0, event.detected_ms - t0))
        elif isinstance(event, SpeechPaused):
            out.append(("pause", event.utterance.end_ms - t0, event.detected_ms - t0))
        else:
            u = event.utterance
            out.append(("end", u.start_ms - t0, u.voice_start_ms - t0, u.end_ms - t0, u.forced, event.detected_ms - t0))
    return out


MAX_1S = replace(DEFAULT, max_utterance_ms=1000)
FRAMES_30MS = replace(DEFAULT, frame_ms=30)

# (name, script, config, expected events with times relative to the first frame).
# ("start", voice_start_ms, detected_ms); ("end", start_ms, voice_start_ms, end_ms, forced, detected_ms).
CASES = [
    ("blip of 180 ms does not start", "_" * 20 + "#" * 9 + "_" * 40, DEFAULT, []),
    ("alternating frames never reach 200 ms in 300 ms", "#_" * 40, DEFAULT, []),
    ("separate blips do not add up", "_" * 10 + ("#" * 5 + "_" * 12) * 4, DEFAULT, []),
    (
        "two voiced frames in three start once 200 ms fall in the window",
        "_" * 20 + "##_" * 10 + "_" * 40,
        DEFAULT,
        [("start", 400, 680), ("end", 100, 400, 980, False, 1580)],
    ),
    (
        "200 ms of speech starts, 600 ms of silence ends",
        "_" * 25 + "#" * 10 + "_" * 40,
        DEFAULT,
        [("start", 500, 700), ("end", 200, 500, 700, False, 1300)],
    ),
    (
        "a 400 ms pause does not split",
        "_" * 25 + "#" * 20 + "_" * 20 + "#" * 20 + "_" * 40,
        DEFAULT,
        [("start", 500, 700), ("end", 200, 500, 1700, False, 2300)],
    ),
    (
        "a 580 ms pause does not split",
        "_" * 25 + "#" * 20 + "_" * 29 + "#" * 20 + "_" * 40,
        DEFAULT,
        [("start", 500, 700), ("end", 200, 500, 1880, False, 2480)],
    ),
    (
        "a 600 ms pause splits; pre-roll never reaches back into the previous utterance",
        "_" * 25 + "#" * 20 + "_" * 30 + "#" * 20 + "_" * 40,
        DEFAULT,
        [
            ("start", 500, 700),
            ("end", 200, 500, 900, False, 1500),
            ("start", 1500, 1700),
            ("end", 1200, 1500, 1900, False, 2500),
        ],
    ),
    (
        "a 700 ms pause splits",
        "_" * 25 + "#" * 20 + "_" * 35 + "#" * 20 + "_" * 40,
        DEFAULT,
        [
            ("start", 500, 700),
            ("end", 200, 500, 900, False, 1500),
            ("start", 1600, 1800),
            ("end", 1300, 1600, 2000, False, 2600),
        ],
    ),
    (
        "pre-roll is limited by the start of the stream",
        "#" * 20 + "_" * 40,
        DEFAULT,
        [("start", 0, 200), ("end", 0, 0, 400, False, 1000)],
    ),
    (
        "pre-roll shorter than configured when little audio precedes",
        "_" * 5 + "#" * 20 + "_" * 40,
        DEFAULT,
        [("start", 100, 300), ("end", 0, 100, 500, False, 1100)],
    ),
    (
        "finish() mid-utterance closes it, forced",
        "_" * 10 + "#" * 30,
        DEFAULT,
        [("start", 200, 400), ("end", 0, 200, 800, True, 800)],
    ),
    (
        "finish() during the trailing pause trims it",
        "_" * 10 + "#" * 30 + "_" * 10,
        DEFAULT,
        [("start", 200, 400), ("end", 0, 200, 800, True, 1000)],
    ),
    ("finish() before the start is decided emits nothing", "_" * 10 + "#" * 5, DEFAULT, []),
    (
        "max length cuts and continuing speech restarts at once",
        "_" * 20 + "#" * 100 + "_" * 40,
        MAX_1S,
        [
            ("start", 400, 600),
            ("end", 100, 400, 1100, True, 1100),
            ("start", 1100, 1120),
            ("end", 1100, 1100, 2100, True, 2100),
            ("start", 2100, 2120),
            ("end", 2100, 2100, 2400, False, 3000),
        ],
    ),
    (
        "max length reached in a pause: cut at the last voiced frame, normal start after",
        "_" * 20 + "#" * 30 + "_" * 10 + "#" * 20 + "_" * 40,
        MAX_1S,
        [
            ("start", 400, 600),
            ("end", 100, 400, 1000, True, 1100),
            ("start", 1200, 1400),
            # 1000 ms buffered (speech + trailing pause) at 2000: cut before stop_ms elapses.
            ("end", 1000, 1200, 1600, True, 2000),
        ],
    ),
    ("30 ms frames: 180 ms does not start", "_" * 10 + "#" * 6 + "_" * 30, FRAMES_30MS, []),
    (
        "30 ms frames: 210 ms starts",
        "_" * 10 + "#" * 7 + "_" * 30,
        FRAMES_30MS,
        [("start", 300, 510), ("end", 0, 300, 510, False, 1110)],
    ),
]


@pytest.mark.parametrize("t0", [0, 52, 987_654])
@pytest.mark.parametrize(("name", "script", "config", "expected"), CASES, ids=[case[0] for case in CASES])
def test_scripts(name, script, config, expected, t0):
    events = run_script(script, t0, config)
    assert summarize(events, t0) == expected
    for event in events:
        if isinstance(event, UtteranceEnded):
            u = event.utterance
            # The audio is exactly the frames from start_ms to end_ms.
            first = (u.start_ms - t0) // config.frame_ms
            last = (u.end_ms - t0) // config.frame_ms
            assert frame_indices(u.pcm, config) == list(range(first, last))
            assert u.duration_ms == len(u.pcm) // (config.sample_rate // 1000 * 2)
            assert u.duration_ms <= config.max_utterance_ms
            assert script[(u.voice_start_ms - t0) // config.frame_ms] == "#"
            assert script[(u.end_ms - t0) // config.frame_ms - 1] == "#"


def test_in_speech_follows_the_events():
    endpointer = Endpointer(DEFAULT, fake_is_speech)
    script = "_" * 5 + "#" * 15 + "_" * 35
    states = []
    for index, mark in enumerate(script):
        events = endpointer.push(make_frame(index, mark == "#"), index * 20)
        states.append((endpointer.in_speech, [type(e).__name__ for e in events]))
    assert states[13] == (False, [])  # 9 voiced frames
    assert states[14] == (True, ["SpeechStarted"])  # 10th voiced frame
    assert all(in_speech for in_speech, _ in states[14:49])
    assert states[49] == (False, ["UtteranceEnded"])  # 30th silent frame after the last voiced
    assert endpointer.finish() == []


def test_reset_forgets_everything():
    endpointer = Endpointer(DEFAULT, fake_is_speech)
    for index in range(15):
        endpointer.push(make_frame(index, True), index * 20)
    assert endpointer.in_speech
    endpointer.reset()
    assert not endpointer.in_speech
    endpointer.push(make_frame(0, True), 0)  # the clock was reset too: going back is allowed
    assert endpointer.finish() == []


def test_finish_resets_for_a_new_stream():
    endpointer = Endpointer(DEFAULT, fake_is_speech)
    for index in range(20):
        endpointer.push(make_frame(index, True), 1000 + index * 20)
    assert len(endpointer.finish()) == 1 and not endpointer.in_speech
    events = [e for index in range(20) for e in endpointer.push(make_frame(index, True), index * 20)]
    assert summarize(events, 0) == [("start", 0, 200)]


def test_gap_in_timestamps_counts_as_silence_and_can_end_an_utterance():
    endpointer = Endpointer(DEFAULT, fake_is_speech)
    events = [e for i in range(20) for e in endpointer.push(make_frame(i, True), i * 20)]
    events += endpointer.push(make_frame(20, True), 400 + 700)  # 700 ms of nothing, then speech
    assert summarize(events, 0) == [("start", 0, 200), ("end", 0, 0, 400, False, 1100)]
    # The frame after the gap starts a fresh window: no pre-roll from before the gap.
    events = [e for i in range(21, 30) for e in endpointer.push(make_frame(i, True), 1100 + (i - 20) * 20)]
    assert summarize(events, 0) == [("start", 1100, 1300)]
    (ended,) = endpointer.finish()
    assert ended.utterance.start_ms == 1100 and frame_indices(ended.utterance.pcm) == list(range(20, 30))


def test_short_gap_inside_an_utterance_is_zero_filled():
    endpointer = Endpointer(DEFAULT, fake_is_speech)
    for i in range(20):
        endpointer.push(make_frame(i, True), i * 20)
    assert endpointer.push(make_frame(20, True), 400 + 100) == []  # 100 ms missing
    (ended,) = endpointer.finish()
    u = ended.utterance
    assert (u.start_ms, u.end_ms) == (0, 520) and len(u.pcm) == 520 * 16
    assert u.pcm[400 * 16 : 500 * 16] == bytes(100 * 16)


def test_frame_errors():
    endpointer = Endpointer(DEFAULT, fake_is_speech)
    with pytest.raises(AudioFormatError):
        endpointer.push(bytes(318), 0)
    with pytest.raises(TypeError):
        endpointer.push(make_frame(0, False), "0")
    endpointer.push(make_frame(0, False), 100)
    with pytest.raises(ValueError):
        endpointer.push(make_frame(1, False), 110)  # overlaps the previous frame


@pytest.mark.parametrize(
    "changes",
    [
        dict(frame_ms=25),
        dict(sample_rate=44100),
        dict(start_ms=0),
        dict(start_ms=400, start_window_ms=300),
        dict(stop_ms=0),
        dict(pre_roll_ms=-1),
        dict(max_utterance_ms=600),
    ],
)
def test_invalid_config_raises(changes):
    with pytest.raises(ValueError):
        replace(DEFAULT, **changes)


def test_cost_per_frame_does_not_grow_with_utterance_length():
    # A 60 s utterance: 5 s blocks late in it must cost about what early ones do (no O(n²) copying).
    config = replace(DEFAULT, max_utterance_ms=120_000)
    endpointer = Endpointer(config, lambda frame: True)
    frame = make_frame(1, True)
    block_s = []
    for block in range(12):
        start = time.perf_counter()
        for i in range(250):
            endpointer.push(frame, (block * 250 + i) * 20)
        block_s.append(time.perf_counter() - start)
    assert endpointer.in_speech
    early, late = min(block_s[1:4]), min(block_s[-3:])
    print(f"\n5 s of frames: {early * 1e3:.2f} ms early in the utterance, {late * 1e3:.2f} ms after 45 s")
    assert late < 3 * early + 0.5e-3


# --- real speech through the phone chain --------------------------------------------------------

FIRST_TIMESTAMP_MS = 52  # Twilio's first inbound timestamp in a captured call
LEAD_MS = 1000
TAIL_MS = 2000


def phone_ulaw(name: str) -> tuple[bytes, np.ndarray]:
    """Read a corpus file, mix to mono, resample to 8 kHz, μ-law encode; pad with μ-law silence."""
    samples, sample_rate = soundfile.read(CORPUS / name, dtype="float32", always_2d=True)
    mono_8k = resample(samples.mean(axis=1), sample_rate, 8000)
    silence = bytes([ULAW_SILENCE])
    return silence * (LEAD_MS * 8) + array_to_ulaw(mono_8k) + silence * (TAIL_MS * 8), mono_8k


def run_chain(ulaw: bytes) -> tuple[list, float, int]:
    """Twilio-like 20 ms chunks → FrameAssembler → WebRtcVad → Endpointer; returns (events, µs/frame, frames)."""
    assembler = FrameAssembler(frame_ms=20, sample_rate=8000)
    vad = WebRtcVad(mode=3, sample_rate=8000, frame_ms=20)
    endpointer = Endpointer(DEFAULT, vad.is_speech)
    chunks = [(ulaw[i : i + 160], FIRST_TIMESTAMP_MS + i // 8) for i in range(0, len(ulaw), 160)]
    events = []
    frames = 0
    start = time.perf_counter()
    for chunk, timestamp_ms in chunks:
        for frame in assembler.push(chunk, timestamp_ms):
            events += endpointer.push(frame.pcm, frame.timestamp_ms)
            frames += 1
    events += endpointer.finish()
    elapsed = time.perf_counter() - start
    assert assembler.filled_frames == assembler.clock_jumps == assembler.overlaps == 0
    return events, elapsed / frames * 1e6, frames


def energy_speech_ms(mono_8k: np.ndarray, below_peak_db: float = 30.0) -> list[int]:
    """Media times (ms) of 20 ms frames whose RMS is within below_peak_db of the loudest frame."""
    count = len(mono_8k) // 160
    frames = mono_8k[: count * 160].astype(np.float64).reshape(count, 160)
    level_db = 10 * np.log10(np.mean(np.square(frames), axis=1) + 1e-12)
    loud = np.flatnonzero(level_db > level_db.max() - below_peak_db)
    return [FIRST_TIMESTAMP_MS + LEAD_MS + 20 * int(k) for k in loud]


def utterances_of(events: list) -> list[Utterance]:
    return [e.utterance for e in events if isinstance(e, UtteranceEnded)]


def report(name: str, events: list, speech_ms: list[int], us_per_frame: float, frames: int) -> None:
    print(f"\n{name}: {frames} frames, {us_per_frame:.1f} µs per 20 ms frame (assembler + VAD + endpointer)")
    print(f"  energy speech bounds: {speech_ms[0]}–{speech_ms[-1] + 20} ms (media time, lead {LEAD_MS} ms)")
    for event in events:
        if isinstance(event, SpeechStarted):
            print(f"  SpeechStarted voice_start={event.voice_start_ms} detected={event.detected_ms}")
        else:
            u = event.utterance
            print(
                f"  Utterance start={u.start_ms} voice_start={u.voice_start_ms} end={u.end_ms} "
                f"({u.duration_ms} ms, forced={u.forced}) detected={event.detected_ms}"
            )


def check_well_formed(events: list) -> list[Utterance]:
    kinds = [type(e) for e in events]
    assert kinds == [SpeechStarted, UtteranceEnded] * (len(events) // 2)  # strictly alternating
    utterances = utterances_of(events)
    previous_end = FIRST_TIMESTAMP_MS
    for u in utterances:
        assert previous_end <= u.start_ms <= u.voice_start_ms < u.end_ms
        assert len(u.pcm) == u.duration_ms * 16
        previous_end = u.end_ms
    return utterances


def test_sr_english_is_one_utterance_covering_the_words():
    ulaw, mono_8k = phone_ulaw("sr_english.wav")
    events, us_per_frame, frames = run_chain(ulaw)
    speech_ms = energy_speech_ms(mono_8k)
    report("sr_english.wav", events, speech_ms, us_per_frame, frames)
    utterances = check_well_formed(events)
    assert len(utterances) == 1
    (u,) = utterances
    assert not u.forced
    speech_start, speech_end = speech_ms[0], speech_ms[-1] + 20
    audio_start = FIRST_TIMESTAMP_MS + LEAD_MS
    assert u.start_ms <= speech_start and u.start_ms <= audio_start + 500
    assert u.end_ms >= speech_end - 40  # the VAD may drop the last faint frame or two
    assert u.end_ms <= audio_start + len(mono_8k) // 8 + 100


def test_jfk_utterances_cover_the_speech():
    ulaw, mono_8k = phone_ulaw("jfk.flac")
    events, us_per_frame, frames = run_chain(ulaw)
    speech_ms = energy_speech_ms(mono_8k)
    report("jfk.flac", events, speech_ms, us_per_frame, frames)
    utterances = check_well_formed(events)
    assert 1 <= len(utterances) <= 4
    assert not any(u.forced for u in utterances)
    assert utterances[0].start_ms <= speech_ms[0]
    assert utterances[-1].end_ms >= speech_ms[-1] + 20 - 40
    covered = [any(u.start_ms <= t < u.end_ms for u in utterances) for t in speech_ms]
    print(f"  loud frames inside an utterance: {sum(covered)}/{len(covered)}")
    assert np.mean(covered) >= 0.95


# --- SpeechPaused (speculative recognition) --------------------------------------------------------

PAUSE_100 = replace(DEFAULT, pause_ms=100, start_ms=60, start_window_ms=100, stop_ms=200, pre_roll_ms=0)


def test_a_pause_is_reported_once_then_the_endpoint_has_the_same_utterance():
    # voiced 5 frames, 5 quiet (a pause of 100 ms), 3 voiced, 10 quiet (a pause, then the endpoint at 200 ms)
    events = run_script("#####_____###__________", config=PAUSE_100)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["SpeechStarted", "SpeechPaused", "SpeechPaused", "UtteranceEnded"]
    first_pause, second_pause, end = events[1], events[2], events[3]
    assert first_pause.utterance.end_ms == 100 and first_pause.detected_ms == 200
    assert second_pause.utterance.end_ms == 260 and second_pause.detected_ms == 360 and end.detected_ms == 460
    assert second_pause.utterance == replace(end.utterance, forced=False) and not end.utterance.forced
    assert first_pause.utterance.pcm == end.utterance.pcm[: len(first_pause.utterance.pcm)]


@pytest.mark.parametrize("pause_ms", [0, 200, 400])
def test_no_pause_events_when_off_or_not_shorter_than_the_endpoint(pause_ms):
    events = run_script("#####_____###__________", config=replace(PAUSE_100, pause_ms=pause_ms))
    assert not any(isinstance(e, SpeechPaused) for e in events)


def test_pause_ms_must_not_be_negative():
    with pytest.raises(ValueError, match="pause_ms"):
        replace(DEFAULT, pause_ms=-1)
