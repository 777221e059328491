"""Tests for audio.hybrid_vad: WebRTC VAD confirmed by Silero VAD on a noisy line, on real speech and real noise."""

from pathlib import Path

import numpy as np
import pytest

from audio.codec import array_to_ulaw, ulaw_to_pcm16
from audio.endpointing import Endpointer, EndpointingConfig, SpeechStarted, UtteranceEnded
from audio.errors import AudioFormatError
from audio.hybrid_vad import HybridVad
from audio.resample import resample
from audio.silero_vad import SileroVad
from audio.vad import WebRtcVad
from tests.phone import phone_corpus, read_mono
from tools.twilio_sim.noise import speech_level

CORPUS = Path(__file__).resolve().parent / "data"
FRAME_BYTES = 320  # 20 ms at 8 kHz
LEAD_S = 2.0


def frames_of(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def noise_samples(name: str, seconds: float) -> np.ndarray:
    """``seconds`` of a real noise recording (looped) at 8 kHz, unit RMS."""
    samples, sample_rate = read_mono(CORPUS / "noise" / f"{name}.flac")
    narrow = resample(samples, sample_rate, 8000).astype(np.float64)
    narrow = np.tile(narrow, int(np.ceil(seconds * 8000 / len(narrow))))[: int(seconds * 8000)]
    return narrow / np.sqrt(np.mean(narrow ** 2))


def on_line(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] through the μ-law phone line: PCM16 8 kHz."""
    return ulaw_to_pcm16(array_to_ulaw(samples))


def speech_in_noise(name: str, noise: str, snr_db: float | None, lead_s: float = LEAD_S,
                    tail_s: float = 1.5) -> tuple[bytes, int]:
    """Real speech on the phone line after ``lead_s`` and before ``tail_s``, with a real noise under all of
    it at ``snr_db`` below the speech's active level (None: no noise); PCM16 8 kHz, and the speech's end, ms."""
    speech = np.frombuffer(phone_corpus(name), dtype="<i2") / 32768
    line = np.concatenate([np.zeros(int(lead_s * 8000)), speech, np.zeros(int(tail_s * 8000))])
    if snr_db is not None:
        level = speech_level(speech, 8000) * 10 ** (-snr_db / 20)
        line = line + noise_samples(noise, len(line) / 8000) * level
    return on_line(line), int((lead_s * 1000) + len(speech) / 8)


def decisions(vad, pcm: bytes) -> np.ndarray:
    return np.array([vad.is_speech(f) for f in frames_of(pcm)])


def endpoint(pcm: bytes, is_speech) -> tuple[list[SpeechStarted], list[UtteranceEnded]]:
    """The default endpointing (start 200 ms, stop 600 ms, 15 s cut) over ``pcm``."""
    endpointer = Endpointer(EndpointingConfig(), is_speech)
    events = []
    for index, frame in enumerate(frames_of(pcm)):
        events += endpointer.push(frame, index * 20)
    events += endpointer.finish()
    return ([e for e in events if isinstance(e, SpeechStarted)], [e for e in events if isinstance(e, UtteranceEnded)])


@pytest.mark.parametrize("name", ["sr_english.wav", "cards_002.flac", "goforward.flac", "librivox_ss01_0870.flac"])
def test_clean_speech_is_decided_exactly_as_webrtc_vad_decides_it(name):
    # A quiet line: the same decision on every frame, so the same utterance starts (no Silero lag).
    pcm, _ = speech_in_noise(name, "street", None)
    hybrid = HybridVad()
    ours, webrtc = decisions(hybrid, pcm), decisions(WebRtcVad(), pcm)
    assert webrtc.any()
    assert np.array_equal(ours, webrtc)
    assert not hybrid.noisy


@pytest.mark.parametrize("name", ["street", "music"])
@pytest.mark.parametrize("level_dbfs", [-25, -20])
def test_street_noise_and_music_alone_are_not_speech(name, level_dbfs):
    # 10 and 5 dB under jfk.flac's active level: WebRTC VAD alone calls nearly all of it speech
    # (docs/benchmarks.md), so the endpointer would start "turns" that stop the bot.
    pcm = on_line(noise_samples(name, 30.0) * 10 ** (level_dbfs / 20))
    webrtc = decisions(WebRtcVad(), pcm)
    hybrid = HybridVad()
    ours = decisions(hybrid, pcm)
    print(f"\n{name} at {level_dbfs} dBFS: WebRTC {webrtc.mean():.0%} voiced, hybrid {ours.mean():.1%}")
    assert webrtc.mean() > 0.8
    assert ours.mean() < 0.02
    assert hybrid.noisy
    starts, _ = endpoint(pcm, HybridVad().is_speech)
    assert not starts


@pytest.mark.parametrize("noise", ["street", "music"])
@pytest.mark.parametrize("snr_db", [10, 5])
def test_a_turn_in_street_noise_and_music_is_heard_and_ended_by_silence(noise, snr_db):
    pcm, speech_end_ms = speech_in_noise("jfk.flac", noise, snr_db)
    starts, ended = endpoint(pcm, HybridVad().is_speech)
    assert starts and ended
    last = ended[-1].utterance
    assert not last.forced  # not cut at 15 s, not still open at the end
    assert last.end_ms >= speech_end_ms - 1000  # it holds the speech's end
    assert starts[0].voice_start_ms >= LEAD_S * 1000 - 300  # nothing started in the noise before the words
    # WebRTC VAD alone hears no end in it.
    _, webrtc_ended = endpoint(pcm, WebRtcVad().is_speech)
    assert all(e.utterance.forced for e in webrtc_ended[-1:])


def test_noise_that_begins_mid_call_turns_the_line_noisy():
    # 3 s of a quiet line, then street traffic at -25 dBFS, which WebRTC VAD hears as speech: one
    # false start at most, ended once the noise is 65 % of the last 5 s of evidence (3.3 s) and 600 ms on.
    quiet = on_line(np.zeros(3 * 8000))
    noise = on_line(noise_samples("street", 30.0) * 10 ** (-25 / 20))
    hybrid = HybridVad()
    assert not decisions(hybrid, quiet).any()
    assert not hybrid.noisy
    flags = decisions(hybrid, noise)
    assert hybrid.noisy
    assert flags[:100].mean() > 0.5  # WebRTC's decisions until then (the test can fail)
    assert flags[250:].mean() < 0.02
    starts, ended = endpoint(quiet + noise, HybridVad().is_speech)
    assert len(starts) <= 1
    assert all(e.utterance.end_ms - e.utterance.voice_start_ms <= 4500 for e in ended)


def test_the_line_turns_quiet_again_after_the_noise():
    # Music at -25 dBFS for 10 s, then 5 s of a quiet line and "one two three": WebRTC's decisions again.
    music = on_line(noise_samples("music", 10.0) * 10 ** (-25 / 20))
    speech, _ = speech_in_noise("sr_english.wav", "street", None, lead_s=5.0)
    hybrid, alone = HybridVad(), WebRtcVad()  # WebRTC VAD adapts to what it heard: both hear the music
    decisions(hybrid, music), decisions(alone, music)
    assert hybrid.noisy
    after, webrtc = decisions(hybrid, speech), decisions(alone, speech)
    assert not hybrid.noisy
    # Once 4 s of quiet make the music 20 % of the last 5 s of evidence: WebRTC's decisions.
    assert np.array_equal(after[200:], webrtc[200:]) and webrtc[200:].any()
    assert not after[:5].any() and webrtc[:5].all()  # WebRTC's hangover from the music: the line was still noisy


def test_silero_runs_only_on_frames_webrtc_calls_speech(monkeypatch):
    runs = []
    real = SileroVad.is_speech

    def counting(self, frame):
        runs.append(frame)
        return real(self, frame)

    monkeypatch.setattr(SileroVad, "is_speech", counting)
    hybrid = HybridVad()
    silence = bytes(FRAME_BYTES)
    assert not any(hybrid.is_speech(silence) for _ in range(200))
    assert runs == []
    pcm, _ = speech_in_noise("sr_english.wav", "street", None)
    flags = decisions(WebRtcVad(), pcm)
    decisions(hybrid, pcm)
    # Each voiced frame, and before each run after a gap at most catch_up_ms (160 ms) of the frames skipped.
    assert flags.sum() <= len(runs) <= flags.sum() + 8 * (np.diff(flags.astype(int)) == 1).sum() + 8
    assert len(runs) < len(flags) / 2


def test_at_16_khz():
    samples, sample_rate = read_mono(CORPUS / "sr_english.wav")
    wide = np.clip(np.rint(resample(samples, sample_rate, 16000) * 32768), -32768, 32767).astype("<i2").tobytes()
    hybrid, webrtc = HybridVad(sample_rate=16000), WebRtcVad(sample_rate=16000)
    assert hybrid.frame_bytes == 640
    pcm = bytes(2 * 16000 * 2) + wide + bytes(16000 * 2)
    frames = [pcm[i : i + 640] for i in range(0, len(pcm) - 639, 640)]
    ours = [hybrid.is_speech(f) for f in frames]
    assert ours == [webrtc.is_speech(f) for f in frames] and any(ours)


@pytest.mark.parametrize("length", [0, 1, 318, 319, 321, 640])
def test_wrong_frame_length_raises(length):
    with pytest.raises(AudioFormatError):
        HybridVad().is_speech(bytes(length))


@pytest.mark.parametrize(
    "kwargs, error",
    [(dict(sample_rate=32000), AudioFormatError), (dict(mode=4), AudioFormatError), (dict(frame_ms=15), AudioFormatError),
     (dict(enter_share=0.2, leave_share=0.2), ValueError), (dict(enter_share=1.1), ValueError),
     (dict(leave_share=-0.1), ValueError), (dict(window_ms=10), ValueError), (dict(settle_ms=-1), ValueError),
     (dict(settle_ms=6000), ValueError), (dict(catch_up_ms=-1), ValueError)],
)
def test_bad_arguments_raise(kwargs, error):
    with pytest.raises(error):
        HybridVad(**kwargs)
