"""Echo cancellation (audio.echo): the reference timeline, WebRTC's canceller on real speech, and
the session not interrupting itself on a speakerphone's echo while a real barge-in still works."""

import numpy as np
import pytest

from audio.codec import array_to_ulaw, ulaw_to_pcm16
from audio.echo import CLEAR_LAG_MS, EchoCanceller
from audio.endpointing import EndpointingConfig
from audio.vad import WebRtcVad
from core.protocol import Media, MediaFormat, Start
from core.session import CallSession, SessionConfig, Send, Speak
from tests.phone import phone_corpus

STREAM_SID = "MZ00000000000000000000000000000001"
CALL_SID = "CA00000000000000000000000000000001"
RATE = 8000
FRAME_BYTES = 320  # 20 ms of PCM16 at 8 kHz


class RecordingProcessor:
    """Stands in for WebRTC in the bookkeeping tests: keeps the reference blocks, returns the caller's."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.far_blocks: list[bytes] = []

    def far(self, pcm: bytes) -> None:
        self.far_blocks.append(pcm)

    def near(self, pcm: bytes) -> bytes:
        return pcm


def tone(ms: int, value: int) -> bytes:
    return np.full(ms * RATE // 1000, value, dtype="<i2").tobytes()


def canceller() -> tuple[EchoCanceller, list[RecordingProcessor]]:
    made: list[RecordingProcessor] = []

    def make(rate):
        made.append(RecordingProcessor(rate))
        return made[-1]

    return EchoCanceller(RATE, 20, tail_ms=100, learn_ms=0, make_processor=make), made


def test_no_bot_audio_no_canceller():
    echo, made = canceller()
    frame = bytes(range(256)) + bytes(64)
    assert echo.process(frame, 0) is frame
    echo.play(1000, tone(40, 7))
    assert echo.process(frame, 960) is frame  # before the audio plays
    assert made == []


def test_the_reference_is_placed_on_the_media_clock_and_queues_behind_earlier_audio():
    echo, made = canceller()
    echo.play(100, tone(40, 1))  # plays 100-140
    echo.play(110, tone(20, 2))  # sent while the first plays: 140-160
    for t in range(80, 180, 20):
        echo.process(bytes(FRAME_BYTES), t)
    blocks = [np.frombuffer(b, "<i2") for b in made[0].far_blocks]
    assert [int(b[0]) for b in blocks] == [1, 1, 1, 1, 2, 2, 0, 0]  # 10 ms blocks from 100 ms (the 80 ms frame had none)
    assert all(len(b) == 80 for b in blocks)


def test_a_clear_cuts_the_reference_after_the_lag_and_the_tail_ends_the_cancelling():
    echo, made = canceller()
    echo.play(0, tone(1000, 5))
    echo.process(bytes(FRAME_BYTES), 0)
    echo.clear(30 - CLEAR_LAG_MS)  # the audio sent before the clear plays on until 30 ms
    echo.process(bytes(FRAME_BYTES), 20)
    first, second, third, fourth = (np.frombuffer(b, "<i2") for b in made[0].far_blocks)
    assert first.max() == second.max() == third.max() == 5 and fourth.max() == 0  # 20-30 played, 30-40 cleared
    frame = bytes(FRAME_BYTES)
    assert echo.process(frame, 120) is not frame  # within the 100 ms tail after 30 ms
    assert echo.process(frame, 140) is frame


def test_bad_arguments():
    with pytest.raises(ValueError):
        EchoCanceller(RATE, 15)
    with pytest.raises(ValueError):
        EchoCanceller(RATE, 20, tail_ms=-1)
    with pytest.raises(ValueError):
        canceller()[0].process(bytes(100), 0)


def speech(name: str) -> np.ndarray:
    """A corpus file after the phone path, float in [-1, 1] at 8 kHz."""
    return np.frombuffer(phone_corpus(name), "<i2").astype(np.float64) / 32768


def phone_frames(samples: np.ndarray) -> list[bytes]:
    """μ-law round trip (what arrives from Twilio), cut into 20 ms PCM16 frames."""
    pcm = ulaw_to_pcm16(array_to_ulaw(samples))
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def level_db(frames: list[bytes]) -> float:
    x = np.frombuffer(b"".join(frames), "<i2").astype(np.float64) / 32768
    return 10 * np.log10(np.mean(x**2) + 1e-12)


def echo_of(bot: np.ndarray, echo_db: float, delay_ms: int, length: int) -> np.ndarray:
    out = np.zeros(length)
    d = delay_ms * RATE // 1000
    n = min(len(bot), length - d)
    out[d : d + n] = bot[:n] * 10 ** (echo_db / 20)
    return out


def room_echo_of(bot: np.ndarray, echo_db: float, delay_ms: int, length: int, rt60_s: float = 0.3, seed: int = 1) -> np.ndarray:
    """``echo_of`` through a room and a loudspeaker: convolved with a decaying random impulse
    response (``rt60_s``: 60 dB down after that long; a fixed ``seed``) and soft-clipped (tanh,
    a speaker driven hard), so it is not a scaled copy of what was played."""
    n = int(rt60_s * RATE)
    response = np.random.default_rng(seed).standard_normal(n) * np.exp(-6.9 * np.arange(n) / n)
    response[0] += 3  # the direct path
    response /= np.sqrt(np.sum(response**2))
    played = np.tanh(3 * np.convolve(bot, response)[: len(bot)]) / 3
    return echo_of(played / np.sqrt(np.mean(played**2)) * np.sqrt(np.mean(bot**2)), echo_db, delay_ms, length)


@pytest.mark.parametrize("echo_db, delay_ms", [(-10, 50), (-10, 300), (-20, 160)])
def test_webrtc_removes_the_echo_of_real_speech_and_keeps_the_caller(echo_db, delay_ms):
    bot = speech("jfk.flac")
    sent = ulaw_to_pcm16(array_to_ulaw(bot))
    echo = EchoCanceller(RATE, 20)
    echo.play(0, sent)
    caller = speech("sr_english.wav")
    start = 6 * RATE  # the caller talks over the bot from 6 s on, once the canceller has converged
    near = echo_of(bot, echo_db, delay_ms, len(bot))
    with_caller = near.copy()
    with_caller[start : start + len(caller)] += caller
    for inbound, name in ((near, "echo only"), (with_caller, "double talk")):
        echo = EchoCanceller(RATE, 20)
        echo.play(0, sent)
        frames = phone_frames(inbound)
        out = [echo.process(f, i * 20) for i, f in enumerate(frames)]
        lo, hi = start // 160, (start + len(caller)) // 160
        if name == "echo only":
            # after two seconds to converge, the echo is at least 20 dB down
            assert level_db(out[100:lo]) < level_db(frames[100:lo]) - 20, name
            assert level_db(out[lo:hi]) < level_db(frames[lo:hi]) - 20, name
        else:  # the caller's speech goes through within 3 dB
            assert abs(level_db(out[lo:hi]) - level_db(phone_frames(caller))) < 3, name


def run_call(inbound: np.ndarray, bot: bytes, echo: EchoCanceller | None) -> list[int]:
    """A call whose greeting is ``bot`` (μ-law) and whose caller sends ``inbound`` (float, 8 kHz)
    from the moment the greeting is sent; returns the media times of the ``clear`` messages."""
    vad = WebRtcVad(3, RATE, 20)
    session = CallSession(SessionConfig(endpointing=EndpointingConfig(), greeting="Hello."), vad.is_speech, echo=echo)
    session.receive_event(Start(STREAM_SID, "AC1", CALL_SID, ("inbound",), MediaFormat(), {}))
    [speak] = [a for a in session.actions_to_perform() if isinstance(a, Speak)]
    session.receive_speech(speak.reply_id, 0, bot)
    session.actions_to_perform()
    clears = []
    ulaw = array_to_ulaw(inbound)
    for i in range(len(ulaw) // 160):
        session.receive_event(Media(STREAM_SID, "inbound", None, i * 20, ulaw[i * 160 : (i + 1) * 160]))
        for action in session.actions_to_perform():
            if isinstance(action, Send) and '"clear"' in action.text:
                clears.append(i * 20)
    return clears


@pytest.mark.parametrize("echo_db, delay_ms", [(-20, 160), (-10, 50), (-10, 300)])
def test_a_speakerphone_echo_does_not_interrupt_the_bot_but_the_caller_does(echo_db, delay_ms):
    bot = speech("jfk.flac")
    bot_ulaw = array_to_ulaw(bot)
    near = echo_of(bot, echo_db, delay_ms, len(bot))
    without = run_call(near, bot_ulaw, None)
    assert without, "the echo alone interrupts the bot without cancellation"
    clears = run_call(near, bot_ulaw, EchoCanceller(RATE, 20))
    assert clears == []
    caller = speech("sr_english.wav")
    voiced = [i for i, f in enumerate(phone_frames(caller)) if WebRtcVad(3, RATE, 20).is_speech(f)]
    start = 6 * RATE
    talk = near.copy()
    talk[start : start + len(caller)] += caller
    clears = run_call(talk, bot_ulaw, EchoCanceller(RATE, 20))
    onset_ms = 6000 + voiced[0] * 20
    assert len(clears) == 1 and 0 < clears[0] - onset_ms <= 600


def test_while_learning_a_frame_no_louder_than_an_echo_is_silenced():
    made: list[RecordingProcessor] = []
    echo = EchoCanceller(RATE, 20, learn_ms=40, make_processor=lambda rate: made.append(RecordingProcessor(rate)) or made[-1],
                         detect=False)
    echo.play(0, tone(1000, 10000))  # loud bot audio
    echo_level = tone(20, 3000)  # -10.5 dB: could be its echo
    caller = tone(20, 9000)  # -0.9 dB: louder than any echo at -7 dB
    assert echo.process(echo_level, 0) == bytes(FRAME_BYTES)
    assert echo.process(caller, 20) == caller
    assert echo.process(echo_level, 40) == echo_level  # 40 ms of bot audio played: the gate is lifted
