"""The echo detector (audio.echo_detect) on real speech, and the canceller behind it: a speakerphone
echo is found, a handset line is found to carry none and its caller is left alone."""

import numpy as np
import pytest

from audio.codec import array_to_ulaw, ulaw_to_pcm16
from audio.echo import EchoCanceller
from audio.echo_detect import Echo, EchoDetector, ncc_peak
from audio.vad import WebRtcVad
from tests.test_echo import RATE, echo_of, phone_frames, room_echo_of, speech

FRAME_BYTES = 320


def decisions(near: np.ndarray, bot: np.ndarray) -> list[Echo]:
    """The detector's decision after each 20 ms frame, the bot audio playing from 0 ms."""
    detector = EchoDetector(RATE, 20)
    far = phone_frames(bot)
    return [detector.push(f, n) for f, n in zip(far, phone_frames(near))]


def first(states: list[Echo], state: Echo) -> int | None:
    """Media time (ms) of the first frame after which the decision is ``state``."""
    return next((i * 20 for i, s in enumerate(states) if s is state), None)


def line_noise(length: int, dbfs: float = -65.0) -> np.ndarray:
    return np.random.default_rng(7).standard_normal(length) * 10 ** (dbfs / 20)


@pytest.mark.parametrize("echo_db, delay_ms, room", [(-20, 160, False), (-10, 300, True), (-30, 160, True), (-6, 50, False)])
def test_a_speakerphone_echo_is_found_within_two_and_a_half_seconds(echo_db, delay_ms, room):
    bot = speech("jfk.flac")
    near = (room_echo_of if room else echo_of)(bot, echo_db, delay_ms, len(bot)) + line_noise(len(bot))
    states = decisions(near, bot)
    assert first(states, Echo.ABSENT) is None
    assert first(states, Echo.PRESENT) <= 2500  # two tests in a row, 500 ms apart


def test_a_handset_line_is_found_to_carry_no_echo():
    bot = speech("jfk.flac")
    states = decisions(line_noise(len(bot)), bot)
    assert first(states, Echo.PRESENT) is None
    assert first(states, Echo.ABSENT) <= 1100


def test_a_caller_talking_over_the_bot_all_along_is_not_taken_for_an_echo():
    bot = speech("jfk.flac")
    talk = np.concatenate([speech(name) for name in ("librivox_ss01_0870.flac", "arctic_a0007.flac", "goforward.flac")])
    near = np.zeros(len(bot))
    near[: min(len(talk), len(bot))] = talk[: len(bot)]
    states = decisions(near + line_noise(len(bot)), bot)
    assert first(states, Echo.PRESENT) is None


def test_a_noisy_handset_line_is_found_to_carry_no_echo_and_a_noisy_speakerphone_an_echo():
    # Street noise 10 dB under the bot's speech level: the line is never quiet, and it is not the bot.
    bot = speech("jfk.flac")
    noise = speech("noise/street.flac")
    noise = np.resize(noise, len(bot)) / np.sqrt(np.mean(noise**2)) * np.sqrt(np.mean(bot**2)) * 10 ** (-10 / 20)
    states = decisions(noise, bot)
    assert first(states, Echo.PRESENT) is None and first(states, Echo.ABSENT) <= 2600
    states = decisions(noise * 10 ** (-10 / 20) + room_echo_of(bot, -10, 160, len(bot)), bot)
    assert first(states, Echo.ABSENT) is None and first(states, Echo.PRESENT) <= 2500


def test_a_handset_switched_to_the_speakerphone_is_found():
    bot = speech("jfk.flac")
    near = line_noise(len(bot))
    switch = 4 * RATE
    near[switch:] += room_echo_of(bot, -20, 160, len(bot))[switch:]
    states = decisions(near, bot)
    assert first(states, Echo.ABSENT) <= 1100
    assert 4000 < first(states, Echo.PRESENT) <= 6500


def test_ncc_peak_finds_a_delayed_copy_and_nothing_in_silence():
    rng = np.random.default_rng(3)
    far = rng.standard_normal(3000)
    near = 0.1 * far[1000 - 240 : 2000 - 240] + 0.001 * rng.standard_normal(1000)  # 240 samples late
    peak, lag = ncc_peak(near, far[:2000], 500)
    assert peak > 0.95 and lag == 240
    assert ncc_peak(near, far[:2000], 100)[0] < 0.2  # the delay is past the lags looked at
    assert ncc_peak(np.zeros(1000), far[:2000], 500) == (0.0, 0)
    assert ncc_peak(near, np.zeros(2000), 500) == (0.0, 0)


def test_frames_of_the_wrong_size_are_refused():
    with pytest.raises(ValueError):
        EchoDetector(RATE, 20).push(bytes(FRAME_BYTES), bytes(100))


def voiced_frames(frames: list[bytes]) -> int:
    vad = WebRtcVad(3, RATE, 20)
    return sum(vad.is_speech(f) for f in frames)


@pytest.mark.parametrize("start_s", [1.5, 3.0])
def test_a_handset_callers_words_over_the_bot_go_through_untouched(start_s):
    # Before the detector, AEC3 took the caller's speech down 48 dB (median) here: 22-30 of its
    # voiced frames were left when the caller started 1.5 or 3 s into the bot's audio.
    bot = speech("jfk.flac")
    caller = speech("sr_english.wav")
    near = line_noise(len(bot))
    start = int(start_s * RATE)
    near[start : start + len(caller)] += caller
    canceller = EchoCanceller(RATE, 20)
    canceller.play(0, ulaw_to_pcm16(array_to_ulaw(bot)))
    frames = phone_frames(near)
    out = [canceller.process(f, i * 20) for i, f in enumerate(frames)]
    lo, hi = start // 160, (start + len(caller)) // 160
    assert out[lo:hi] == frames[lo:hi]
    assert canceller.detector.state is Echo.ABSENT
    before = EchoCanceller(RATE, 20, detect=False)
    before.play(0, ulaw_to_pcm16(array_to_ulaw(bot)))
    old = [before.process(f, i * 20) for i, f in enumerate(frames)]
    assert voiced_frames(old[lo:hi]) < voiced_frames(frames[lo:hi]) // 2  # what the detector is for
