"""Tests for tools/twilio_sim/noise.py (pure) and the noisy line of ``SimulatedCall``/``SimulatedFork`` (fake socket).

The speech and the noise are the real recordings in tests/data (``noise/README`` rows in tests/data/README.md).
"""

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from audio.codec import ulaw_to_array
from tests.phone import read_mono
from tools.twilio_sim.audio_files import read_audio
from tools.twilio_sim.echo import EchoPath
from tools.twilio_sim.media_format import L16_16K, L16_24K, MULAW_8K
from tools.twilio_sim.messages import TwilioMessages
from tools.twilio_sim.noise import LineNoise, frame_rms, noise_gain, parse_noise_arg, speech_level
from tools.twilio_sim.script import CallerScript, ForkScript, ScriptItem, TurnWaiter

DATA = Path(__file__).resolve().parent / "data"
NOISES = ["street", "babble", "music"]
STREAM_SID = "MZ" + "ab" * 16


def noise_at(name: str, media_format) -> np.ndarray:
    """A real noise recording as floats at the stream's rate (the way callsim reads it)."""
    return read_audio(str(DATA / "noise" / f"{name}.flac")).at_rate(media_format.sample_rate).astype(np.float64)


def speech_at(name: str, media_format) -> np.ndarray:
    """Real speech through the stream's format, decoded again: floats in [-1, 1] at its rate."""
    payload = read_audio(str(DATA / name)).encode(media_format)
    return np.frombuffer(media_format.to_pcm16(payload), dtype="<i2") / 32768


def decode(payload: bytes, media_format) -> np.ndarray:
    return np.frombuffer(media_format.to_pcm16(payload), dtype="<i2").astype(np.float64)


def mix_silence(line: LineNoise, frames: int) -> np.ndarray:
    """What the line sends while the caller is silent for ``frames`` 20 ms frames, as int16-scale floats."""
    return np.concatenate([decode(line.mix(line.media_format.silence_frame), line.media_format)
                           for _ in range(frames)])


# --- the argument ------------------------------------------------------------------------------


def test_the_argument_splits_at_the_last_colon():
    assert parse_noise_arg("tests/data/noise/street.flac:10") == ("tests/data/noise/street.flac", 10.0)
    assert parse_noise_arg("C:/noise/a.wav:-5.5") == ("C:/noise/a.wav", -5.5)


@pytest.mark.parametrize("text, message", [
    ("street.flac", "expected FILE:SNR"), (":10", "expected FILE:SNR"), ("street.flac:loud", "must be a number"),
    ("street.flac:", "must be a number"), ("street.flac:nan", "within -20..60"), ("street.flac:61", "within -20..60"),
    ("street.flac:-inf", "within -20..60"),
])
def test_a_bad_argument_is_refused_with_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_noise_arg(text)


# --- levels ------------------------------------------------------------------------------------


def test_the_speech_level_ignores_the_pauses_between_words():
    speech, rate = read_mono(DATA / "sr_english.wav")  # "one two three", with digital silence between the words
    speech = speech[:len(speech) - len(speech) % (rate // 50)]  # whole 20 ms frames: the copy's frames are the same
    level = speech_level(speech, rate)
    padded = np.concatenate([speech, np.zeros(3 * rate), speech])
    assert speech_level(padded, rate) == pytest.approx(level, rel=1e-9)
    plain_rms = np.sqrt(np.mean(speech ** 2))
    assert level > 1.4 * plain_rms  # the pauses are about half of the file
    assert np.sqrt(np.mean(padded ** 2)) < plain_rms


def test_the_speech_level_is_the_rms_of_the_frames_near_the_loudest():
    rate = 8000
    loud, quiet = np.full(160, 0.5), np.full(160, 0.5 * 10 ** (-31 / 20))  # one frame each
    assert speech_level(np.concatenate([loud, loud * 0.1, quiet]), rate) == pytest.approx(np.sqrt((0.25 + 0.0025) / 2))
    assert frame_rms(np.concatenate([loud, quiet, [1.0] * 100]), rate).tolist() == pytest.approx([0.5, quiet[0]])
    assert speech_level(np.zeros(800), rate) == 0.0 and speech_level(np.ones(100), rate) == 0.0


def test_the_gain_puts_the_noise_snr_db_below_the_speech():
    assert noise_gain(0.1, 0.1, 20) == pytest.approx(0.1)
    assert noise_gain(0.2, 0.05, 0) == pytest.approx(4.0)


# --- mixing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NOISES)
@pytest.mark.parametrize("snr_db", [10, 5])
def test_over_silence_the_line_carries_the_noise_snr_db_below_the_speech_level(name, snr_db):
    speech = speech_at("jfk.flac", MULAW_8K)
    level = speech_level(speech, 8000)
    noise = noise_at(name, MULAW_8K)
    line = LineNoise(noise, level, snr_db, MULAW_8K)
    sent = mix_silence(line, len(noise) // 160) / 32768  # one whole loop of the recording, through μ-law
    measured_db = 20 * np.log10(level / np.sqrt(np.mean(sent ** 2)))
    assert abs(measured_db - snr_db) <= 0.2


@pytest.mark.parametrize("media_format", [MULAW_8K, L16_16K, L16_24K], ids=lambda f: f.label)
def test_the_noise_runs_on_across_frames_and_loops_from_its_start(media_format):
    noise = noise_at("street", media_format)[:1234]  # not a whole number of frames: the loop point is mid-frame
    line = LineNoise(noise, 0.1, 10, media_format)
    frame_samples = media_format.frame_bytes // media_format.sample_width
    frames = 3 * 1234 // frame_samples + 1
    sent = mix_silence(line, frames)
    expected = np.tile(noise * line.gain, 4)[:frames * frame_samples]
    assert np.array_equal(sent, decode(media_format.encode(expected), media_format))
    assert np.flatnonzero(sent).size > 0.9 * sent.size


def test_l16_mixes_exactly_in_linear_pcm_and_clips_instead_of_wrapping():
    noise = noise_at("babble", L16_16K)
    line = LineNoise(noise, 0.05, 0, L16_16K)
    speech = (speech_at("sr_english.wav", L16_16K)[8000:8320] * 32768).astype(np.int16)
    mixed = decode(line.mix(speech.astype("<i2").tobytes()), L16_16K)
    scaled = np.rint(speech + noise[:320] * line.gain * 32768)
    assert np.array_equal(mixed, np.clip(scaled, -32768, 32767))
    loud = LineNoise(noise, 2.0, -20, L16_16K)  # 20 dB above a full-scale speaker: clips at int16
    top = decode(loud.mix(np.full(320, 30000, dtype="<i2").tobytes()), L16_16K)
    assert top.max() == 32767 and top.min() == -32768


@pytest.mark.parametrize("noise, speech_rms, snr_db, message", [
    (np.zeros(800), 0.1, 10, "not all silence"), (np.array([]), 0.1, 10, "not empty"),
    (np.ones((2, 160)), 0.1, 10, "1-D"), (np.ones(800), 0.0, 10, "speech level must be > 0"),
    (np.ones(800), float("nan"), 10, "speech level"), (np.ones(800), 0.1, 61, "within"),
    (np.ones(800), 0.1, float("nan"), "within"),
])
def test_bad_settings_are_refused(noise, speech_rms, snr_db, message):
    with pytest.raises(ValueError, match=message):
        LineNoise(noise, speech_rms, snr_db, MULAW_8K)


# --- SimulatedCall / SimulatedFork --------------------------------------------------------------


class FakeSocket:
    """Collects what the stream sends (a fake, only for these unit tests)."""

    def __init__(self):
        self.sent = []

    def send(self, text):
        self.sent.append(json.loads(text))

    def inbound(self) -> list[bytes]:
        return [base64.b64decode(m["media"]["payload"]) for m in self.sent
                if m["event"] == "media" and m["media"].get("track", "inbound") == "inbound"]


def new_line(snr_db: float = 10) -> LineNoise:
    return LineNoise(noise_at("music", MULAW_8K), 0.1, snr_db, MULAW_8K)


def run_call(ticks: int, noise: LineNoise | None, echo: EchoPath | None = None) -> list[bytes]:
    """A caller who says sr_english.wav at once, then waits; return the inbound payloads of ``ticks`` ticks."""
    from tools.twilio_sim.stream import SimulatedCall

    socket = FakeSocket()
    waiter = TurnWaiter(quiet_s=5.0, min_wait_s=0.0, timeout_s=10.0)
    path = str(DATA / "sr_english.wav")
    script = CallerScript([ScriptItem("audio", path, path=path)], {path: read_audio(path).encode(MULAW_8K)}, waiter,
                          wait_first=False)
    call = SimulatedCall(socket, TwilioMessages(STREAM_SID, "AC" + "cd" * 16, "CA" + "ef" * 16), {}, script, waiter,
                         echo=echo, noise=noise)
    call._t0 = 0.0
    for tick in range(ticks):
        assert call._send_tick(tick * 0.02)
    return socket.inbound()


def test_a_noisy_call_sends_speech_and_silence_with_the_noise_running_on():
    ticks = 200  # 2.74 s of speech, then 1.26 s of waiting in silence
    clean, noisy = run_call(ticks, None), run_call(ticks, new_line())
    reference = new_line()
    assert noisy == [reference.mix(payload) for payload in clean]
    assert all(payload != MULAW_8K.silence_frame for payload in noisy)  # the waiting silence is noisy too
    assert sum(payload == MULAW_8K.silence_frame for payload in clean) > 50


def test_the_noise_is_added_after_the_speakerphone_echo():
    ticks = 40
    noisy = run_call(ticks, new_line(), EchoPath(-20, 160, MULAW_8K))
    echoed = run_call(ticks, None, EchoPath(-20, 160, MULAW_8K))
    reference = new_line()
    assert noisy == [reference.mix(payload) for payload in echoed]


def test_a_fork_puts_the_noise_on_the_callers_track_only():
    from tools.twilio_sim.stream import SimulatedFork

    path = str(DATA / "sr_english.wav")
    payload = read_audio(path).encode(MULAW_8K)
    items = [ScriptItem("audio", path, path=path), ScriptItem("audio", "callee:" + path, path=path, track="outbound")]
    socket = FakeSocket()
    fork = SimulatedFork(socket, TwilioMessages(STREAM_SID, "AC1", "CA1"), {}, ["inbound", "outbound"],
                         ForkScript(items, {path: payload}, gap_s=0, tail_s=0), noise=new_line())
    fork._t0 = 0.0
    tick = 0
    while fork._send_tick(tick * 0.02):
        tick += 1
    inbound = socket.inbound()
    outbound = [base64.b64decode(m["media"]["payload"]) for m in socket.sent
                if m["event"] == "media" and m["media"]["track"] == "outbound"]
    reference = new_line()
    frames = len(inbound)
    caller = [payload[i:i + 160].ljust(160, b"\xff") for i in range(0, len(payload), 160)]
    caller += [MULAW_8K.silence_frame] * (frames - len(caller))
    assert inbound == [reference.mix(frame) for frame in caller]
    assert outbound[:len(caller) // 2] == [MULAW_8K.silence_frame] * (len(caller) // 2)  # the callee waits, clean
    assert ulaw_to_array(b"".join(outbound[-10:])).any()


def test_the_noise_must_be_in_the_streams_format():
    from tools.twilio_sim.stream import SimulatedCall

    waiter = TurnWaiter(quiet_s=1.0, min_wait_s=0.0, timeout_s=5.0)
    with pytest.raises(ValueError, match="L16 16 kHz"):
        SimulatedCall(FakeSocket(), TwilioMessages(STREAM_SID, "AC1", "CA1"), {}, CallerScript([], {}, waiter), waiter,
                      noise=LineNoise(np.ones(320), 0.1, 10, L16_16K))
