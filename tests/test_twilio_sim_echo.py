"""Tests for tools/twilio_sim/echo.py (pure) and the speakerphone echo of ``SimulatedCall`` (fake socket)."""

import base64
import json

import numpy as np
import pytest

from audio.codec import array_to_ulaw, ulaw_to_array
from tools.twilio_sim.echo import EchoPath
from tools.twilio_sim.media_format import L16_16K, L16_24K, MULAW_8K
from tools.twilio_sim.messages import TwilioMessages, parse_server_message
from tools.twilio_sim.script import CallerScript, TurnWaiter

STREAM_SID = "MZ" + "ab" * 16


def decode(payload: bytes, media_format) -> np.ndarray:
    """Wire bytes → int16 samples."""
    return np.frombuffer(media_format.to_pcm16(payload), dtype="<i2")


def frame_samples(media_format) -> int:
    return media_format.frame_bytes // media_format.sample_width


def run_ticks(echo: EchoPath, played: list[bytes], caller: list[bytes]) -> np.ndarray:
    """Drive ``echo`` tick by tick (played, then mix) and return the mixed caller audio as int16 samples."""
    mixed = []
    for audio, payload in zip(played, caller):
        echo.played(audio)
        mixed.append(decode(echo.mix(payload), echo.media_format))
    return np.concatenate(mixed)


# --- the delay line ---------------------------------------------------------------------------


@pytest.mark.parametrize("media_format", [MULAW_8K, L16_16K, L16_24K], ids=lambda f: f.label)
@pytest.mark.parametrize("delay_ms", [0, 20, 160, 170])
def test_an_impulse_played_at_tick_k_comes_back_delay_ms_later_to_the_sample(media_format, delay_ms):
    # The impulse is the last sample of a short tick (the buffer ran dry mid-tick): the rest of that tick
    # is silence, and the delay still counts from the tick's start.
    tick, offset = 3, 37
    impulse = np.zeros(offset + 1, dtype=np.float64)
    impulse[offset] = 0.5
    played = [b""] * 20
    played[tick] = media_format.encode(impulse)
    echo = EchoPath(-20, delay_ms, media_format)
    mixed = run_ticks(echo, played, [media_format.silence_frame] * 20)
    delay_samples = delay_ms * media_format.sample_rate // 1000
    assert echo.delay_samples == delay_samples
    assert np.flatnonzero(mixed).tolist() == [tick * frame_samples(media_format) + offset + delay_samples]


@pytest.mark.parametrize("media_format", [MULAW_8K, L16_24K], ids=lambda f: f.label)
@pytest.mark.parametrize("delay_ms", [0, 20, 160, 170])
def test_a_whole_stream_mixes_like_the_delayed_signal_added_at_once(media_format, delay_ms):
    # Tick by tick, with the ticks' played audio of random lengths, equals one whole-signal computation.
    rng = np.random.default_rng(delay_ms)
    ticks, per_tick = 30, frame_samples(media_format)
    lengths = rng.integers(0, per_tick + 1, ticks)
    played_samples = [rng.uniform(-0.5, 0.5, length) for length in lengths]
    played = [media_format.encode(samples) for samples in played_samples]
    caller = [media_format.encode(rng.uniform(-0.3, 0.3, per_tick)) for _ in range(ticks)]
    mixed = run_ticks(EchoPath(-10, delay_ms, media_format), played, caller)

    heard = np.concatenate([np.pad(decode(audio, media_format), (0, per_tick - len(samples)))
                            for audio, samples in zip(played, played_samples)]).astype(np.float64)
    delay_samples = delay_ms * media_format.sample_rate // 1000
    echo = np.concatenate([np.zeros(delay_samples), heard])[:ticks * per_tick] * 10 ** (-10 / 20)
    sent = np.concatenate([decode(payload, media_format) for payload in caller]).astype(np.float64)
    expected = decode(media_format.encode((sent + echo) / 32768), media_format)
    assert np.array_equal(mixed, expected)


def test_a_delay_is_rounded_to_whole_samples():
    assert EchoPath(-20, 0.07, MULAW_8K).delay_samples == 1  # 0.56 samples
    assert EchoPath(-20, 170.03, L16_24K).delay_samples == 4081  # 4080.72
    assert EchoPath(-20, 2000, L16_24K).delay_samples == 48000


# --- level, clipping, formats ----------------------------------------------------------------


@pytest.mark.parametrize("echo_db", [-20, -10, -6])
def test_a_tone_comes_back_echo_db_lower_after_the_mulaw_round_trip(echo_db):
    ticks = 50
    tone = 0.4 * np.sin(2 * np.pi * 1000 * np.arange(ticks * 160) / 8000)
    played = [MULAW_8K.encode(tone[i * 160:(i + 1) * 160]) for i in range(ticks)]
    mixed = run_ticks(EchoPath(echo_db, 160, MULAW_8K), played, [MULAW_8K.silence_frame] * ticks)
    heard = np.concatenate([ulaw_to_array(frame) for frame in played]).astype(np.float64)
    steady = slice(2000, ticks * 160)  # after the 1280-sample delay, whole periods
    level_db = 20 * np.log10(np.sqrt(np.mean(mixed[steady].astype(np.float64) ** 2))
                             / np.sqrt(np.mean(heard[steady.start - 1280:steady.stop - 1280] ** 2)))
    assert abs(level_db - echo_db) <= 0.5


def test_the_mix_clips_at_int16_instead_of_wrapping():
    loud, quiet = np.full(320, 30000, dtype=np.int16), np.full(320, -30000, dtype=np.int16)
    echo = EchoPath(0, 0, L16_16K)
    echo.played(loud.astype("<i2").tobytes())
    assert decode(echo.mix(loud.astype("<i2").tobytes()), L16_16K).tolist() == [32767] * 320
    echo.played(quiet.astype("<i2").tobytes())
    assert decode(echo.mix(quiet.astype("<i2").tobytes()), L16_16K).tolist() == [-32768] * 320
    ulaw = EchoPath(0, 0, MULAW_8K)
    ulaw.played(array_to_ulaw(np.full(160, 30000, dtype=np.int16)))
    top = ulaw_to_array(array_to_ulaw(np.array([32767], dtype=np.int16)))[0]
    assert ulaw_to_array(ulaw.mix(array_to_ulaw(np.full(160, 30000, dtype=np.int16)))).tolist() == [top] * 160


def test_l16_mixes_exactly_in_linear_pcm():
    rng = np.random.default_rng(7)
    caller = rng.integers(-8000, 8000, 480, dtype=np.int16)
    played = 2 * rng.integers(-4000, 4000, 480, dtype=np.int16)  # even: half of it is a whole sample
    echo = EchoPath(-20 * np.log10(2), 0, L16_24K)  # gain 0.5 (to 1e-16)
    echo.played(played.astype("<i2").tobytes())
    mixed = decode(echo.mix(caller.astype("<i2").tobytes()), L16_24K)
    assert np.array_equal(mixed, caller + played // 2)


def test_with_nothing_due_the_callers_bytes_pass_through_untouched():
    # All 256 μ-law codes, 0x7F (negative zero) included, which a decode/encode would turn into 0xFF.
    echo = EchoPath(-20, 40, MULAW_8K)
    payload = bytes(range(160)) + bytes(range(160, 256)) + bytes(64)
    echo.played(MULAW_8K.encode(np.full(160, 0.5)))  # due 40 ms later: nothing in these two ticks
    assert echo.mix(payload[:160]) == payload[:160]
    echo.played(b"")
    assert echo.mix(payload[160:]) == payload[160:]


@pytest.mark.parametrize("echo_db, delay_ms", [(0.5, 160), (float("nan"), 160), (float("-inf"), 160), (-20, -1),
                                               (-20, 2001), (-20, float("nan"))])
def test_bad_settings_are_refused(echo_db, delay_ms):
    with pytest.raises(ValueError):
        EchoPath(echo_db, delay_ms, MULAW_8K)


# --- SimulatedCall ----------------------------------------------------------------------------


class FakeSocket:
    """Collects what the stream sends (a fake, only for these unit tests)."""

    def __init__(self):
        self.sent = []

    def send(self, text):
        self.sent.append(json.loads(text))


def greeting_call(echo: EchoPath | None, greeting: bytes, ticks: int = 40):
    """A ``SimulatedCall`` whose caller waits silently for a greeting already received; return (call, sent payloads)."""
    from tools.twilio_sim.stream import SimulatedCall

    socket = FakeSocket()
    waiter = TurnWaiter(quiet_s=5.0, min_wait_s=0.0, timeout_s=10.0)
    script = CallerScript([], {}, waiter)
    call = SimulatedCall(socket, TwilioMessages(STREAM_SID, "AC" + "cd" * 16, "CA" + "ef" * 16), {}, script, waiter,
                         echo=echo)
    call._t0 = 0.0
    media = json.dumps({"event": "media", "streamSid": STREAM_SID,
                        "media": {"payload": base64.b64encode(greeting).decode()}})
    call._apply(parse_server_message(media, STREAM_SID), 0.0)
    for tick in range(ticks):
        assert call._send_tick(tick * 0.02)
    payloads = [base64.b64decode(m["media"]["payload"]) for m in socket.sent if m["event"] == "media"]
    return call, payloads


GREETING = MULAW_8K.encode(0.3 * np.sin(np.arange(4000) / 3))  # 500 ms of bot audio, μ-law 8 kHz


def test_without_echo_the_call_sends_the_scripts_frames_byte_for_byte():
    _, payloads = greeting_call(None, GREETING)
    assert payloads == [MULAW_8K.silence_frame] * 40


def test_a_speakerphone_call_sends_the_greetings_echo_in_its_silence_frames():
    call, payloads = greeting_call(EchoPath(-20, 170, MULAW_8K), GREETING)
    sent = np.concatenate([ulaw_to_array(p) for p in payloads]).astype(np.float64)
    heard = ulaw_to_array(bytes(call.heard)).astype(np.float64)
    delay = 170 * 8
    assert not sent[:delay].any()  # the script's silence, before the echo arrives
    expected = ulaw_to_array(array_to_ulaw(np.rint(heard[:len(sent) - delay] * 0.1).astype(np.int16)))
    assert np.array_equal(sent[delay:], expected)
    # 500 ms of greeting, 170 ms later: frames 8 (its second half) to 33 (its first half).
    assert [index for index, p in enumerate(payloads) if p != MULAW_8K.silence_frame] == list(range(8, 34))


def test_the_echo_must_be_in_the_streams_format():
    from tools.twilio_sim.stream import SimulatedCall

    waiter = TurnWaiter(quiet_s=1.0, min_wait_s=0.0, timeout_s=5.0)
    with pytest.raises(ValueError, match="L16 16 kHz"):
        SimulatedCall(FakeSocket(), TwilioMessages(STREAM_SID, "AC1", "CA1"), {}, CallerScript([], {}, waiter), waiter,
                      echo=EchoPath(-20, 160, L16_16K))
